"""The FastAPI app: the public page (`pages.py`), feeds and CAP (`outputs.py`), the REST API
(`api.py`), the operator's desk (`desk.py`). They read the store; when given the channels, the
app also takes pushed notices at `/hooks/{source}` (`hooks.py`) and WebSub deliveries. Served
by `clarion web` and `clarion run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from clarion.channels.base import Channel
from clarion.config import Config
from clarion.store import Store


def create_app(
    store: Store, config: Config, channels: Mapping[str, Channel] | None = None
) -> FastAPI:
    app = FastAPI(
        title=f"{config.clarion.publisher_name} (Clarion)",
        description="Public notices: feeds, CAP documents and the REST API (`/api/v1`).",
        version="1",
        docs_url=None,  # an offline reference instead of Swagger UI from a CDN (below)
        redoc_url=None,
        openapi_url="/api/openapi.json",
        # Any route, before routing: clarion.web.textgate.
        responses={
            400: {"description": "Refused: the address holds a NUL or bytes that are not UTF-8"}
        },
    )
    from clarion.web.api import HourlyLimiter, api_router, install_rate_limits
    from clarion.web.outputs import outputs_router

    # Registered first: `/notices/{id}.cap` must not fall to the HTML page's `/notices/{id}`.
    app.include_router(outputs_router(store, config))
    app.include_router(api_router(store, config, channels))
    app.state.limiter = HourlyLimiter(store)
    install_rate_limits(app, store, config, app.state.limiter)
    from clarion.web.security import HeadAsGet, SecurityMiddleware

    biggest = max(
        [config.clarion.max_request_bytes]
        + [int(getattr(s, "max_bytes", 0)) for s in config.sources.values()]
    )
    https = (config.clarion.public_url or "").startswith("https://")
    from clarion.web.snapshot import SnapshotMiddleware
    from clarion.web.textgate import TextGate

    app.add_middleware(HeadAsGet)
    app.add_middleware(TextGate)  # inside the body limit: reads only what that lets through
    app.add_middleware(SecurityMiddleware, max_body=biggest, https=https)
    # Outermost: a public answer kept in memory goes out with the headers it was built with.
    app.add_middleware(SnapshotMiddleware, store=store, by_host=not config.clarion.public_url)
    from clarion.web.security import DatabaseAway

    app.add_middleware(DatabaseAway)  # outermost: the rate limits read the database too

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        """`Allow` lists every method the path takes: Starlette names only the first route's,
        and `/api/v1/notices` is two routes (GET and POST)."""
        methods: set[str] = set()
        for route in app.routes:
            regex = getattr(route, "path_regex", None)
            if regex is not None and regex.match(request.url.path):
                methods |= set(getattr(route, "methods", None) or ())
        if "GET" in methods:
            methods.add("HEAD")  # answered by HeadAsGet
        return JSONResponse(
            {"detail": "Method Not Allowed"},
            status_code=405,
            headers={"Allow": ", ".join(sorted(methods))},
        )

    if channels is not None:
        from clarion.web.hooks import hooks_router
        from clarion.web.websub_routes import websub_router

        app.include_router(hooks_router(store, config, channels))
        app.include_router(websub_router(store, config, channels))

    @app.get(
        "/readyz",
        summary="Readiness: the database answers and its schema is current",
        responses={503: {"description": "Not ready: the reason is in `detail`"}},
    )
    def readyz() -> Response:
        try:
            current = store.is_current()
        except Exception as exc:  # an unreachable database is exactly what this reports
            return JSONResponse(
                {"status": "not ready", "detail": f"database: {type(exc).__name__}: {exc}"},
                status_code=503,
            )
        if not current:
            return JSONResponse(
                {"status": "not ready", "detail": "database schema is behind: clarion db upgrade"},
                status_code=503,
            )
        return JSONResponse({"status": "ready"})

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
        summary="Prometheus metrics (read from the database: the same on every replica)",
    )
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        from clarion.web.metrics import render_metrics

        return Response(render_metrics(store, config), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/docs", response_class=Response, summary="The API's reference, as a page")
    def api_docs(request: Request) -> Response:
        """Every operation of the OpenAPI document, rendered here: no script, no CDN."""
        from clarion.web.pages import TEMPLATES

        return TEMPLATES.TemplateResponse(
            request,
            "apidocs.html",
            {
                "publisher": config.clarion.publisher_name,
                "follow": [],
                "fediverse": [],
                **reference(app.openapi()),
            },
        )

    @app.get("/healthz", summary="Liveness: the web process answers and reads the database")
    def healthz() -> dict[str, str]:
        store.ping()
        return {"status": "ok"}

    from clarion.web.fediverse import fediverse_router

    fedi = fediverse_router(store, config)
    if fedi is not None:
        app.include_router(fedi)

    if config.desk.enabled:
        from clarion.web.desk import install_desk

        install_desk(app, store, config, channels)

    from clarion.web.pages import pages_router
    from clarion.web.subscribe import subscribe_router

    app.include_router(subscribe_router(store, config))

    app.include_router(pages_router(store, config))

    return app


def reference(doc: dict[str, Any]) -> dict[str, Any]:
    """What the reference page shows of an OpenAPI document: each operation, its parameters
    (their schema's type, `$ref`s named), request body types and answers."""

    def type_of(schema: dict[str, Any]) -> str:
        if "$ref" in schema:
            return str(schema["$ref"]).rsplit("/", 1)[-1]
        if "anyOf" in schema:
            return " or ".join(type_of(s) for s in schema["anyOf"])
        if schema.get("type") == "array":
            return f"list of {type_of(schema.get('items', {}))}"
        return str(schema.get("type", "any"))

    operations = []
    for path, methods in doc.get("paths", {}).items():
        for method, op in methods.items():
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "anchor": f"{method}-{path}".replace("/", "-").strip("-"),
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "parameters": [
                        {
                            "name": p["name"],
                            "where": p.get("in", ""),
                            "type": type_of(p.get("schema", {})),
                            "required": p.get("required", False),
                            "description": p.get("description", ""),
                        }
                        for p in op.get("parameters", [])
                    ],
                    "body": sorted((op.get("requestBody") or {}).get("content", {})),
                    "responses": [
                        (code, r.get("description", ""))
                        for code, r in op.get("responses", {}).items()
                    ],
                }
            )
    return {
        "info": doc.get("info", {}),
        "openapi": doc.get("openapi", ""),
        "operations": operations,
    }
