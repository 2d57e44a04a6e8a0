"""FastAPI app: the public page (a timeline, a permalink per thread) and the Atom feed.

The pages read the store only. When given the channels, the app also takes pushed notices at
`/hooks/{source}` (see `hooks.py`). Served by `clarion web` and `clarion run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from clarion.channels.base import Channel
from clarion.config import Config
from clarion.store import Store
from clarion.store.schema import deliveries, notices, threads
from clarion.web.query import ThreadId

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
FEED_SIZE = 50


def _base_url(config: Config, request: Request) -> str:
    if config.clarion.public_url:
        return config.clarion.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def create_app(
    store: Store, config: Config, channels: Mapping[str, Channel] | None = None
) -> FastAPI:
    app = FastAPI(
        title=f"{config.clarion.publisher_name} (Clarion)",
        description="Public notices: feeds, CAP documents and the REST API (`/api/v1`).",
        version="1",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    publisher = config.clarion.publisher_name
    from clarion.web.api import HourlyLimiter, api_router, install_rate_limits
    from clarion.web.outputs import outputs_router

    # Registered first: `/notices/{id}.cap` must not fall to the HTML page's `/notices/{id}`.
    app.include_router(outputs_router(store, config))
    app.include_router(api_router(store, config, channels))
    app.state.limiter = HourlyLimiter()
    install_rate_limits(app, store, config, app.state.limiter)

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        """`Allow` lists every method the path takes: Starlette names only the first route's,
        and `/api/v1/notices` is two routes (GET and POST)."""
        methods: set[str] = set()
        for route in app.routes:
            regex = getattr(route, "path_regex", None)
            if regex is not None and regex.match(request.url.path):
                methods |= set(getattr(route, "methods", None) or ())
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

    @app.get("/healthz", summary="Liveness: the web process answers and reads the database")
    def healthz() -> dict[str, str]:
        with store.read() as conn:
            conn.execute(select(1))
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, summary="The public page: the timeline")
    def index(request: Request) -> Response:
        with store.read() as conn:
            rows = conn.execute(
                select(threads, notices.c.data, notices.c.msg_type, notices.c.received_at)
                .select_from(threads.join(notices, notices.c.id == threads.c.latest_notice_id))
                .order_by(threads.c.updated_at.desc(), threads.c.id.desc())
                .limit(100)
            ).all()
        now = datetime.now(UTC)
        items = [_summary(r, now) for r in rows]
        return TEMPLATES.TemplateResponse(
            request, "index.html", {"publisher": publisher, "items": items}
        )

    @app.get(
        "/notices/{thread_id}",
        response_class=HTMLResponse,
        responses={404: {"description": "No such notice"}},
        summary="A notice's page: every version, and where it was posted",
    )
    def thread_page(request: Request, thread_id: ThreadId) -> Response:
        with store.read() as conn:
            thread = conn.execute(select(threads).where(threads.c.id == thread_id)).first()
            if thread is None:
                raise HTTPException(404, "No such notice")
            versions = conn.execute(
                select(notices)
                .where(notices.c.thread_id == thread_id)
                .order_by(notices.c.version.desc())
            ).all()
            sent = conn.execute(
                select(
                    deliveries.c.notice_id,
                    deliveries.c.channel,
                    deliveries.c.state,
                    deliveries.c.receipt_url,
                    deliveries.c.payload,
                    deliveries.c.last_error,
                )
                .where(deliveries.c.thread_id == thread_id)
                .order_by(deliveries.c.channel)
            ).all()
        by_notice: dict[int, list[Any]] = {}
        for d in sent:
            by_notice.setdefault(d.notice_id, []).append(d)
        return TEMPLATES.TemplateResponse(
            request,
            "thread.html",
            {
                "publisher": publisher,
                "thread": thread,
                "versions": [(v, v.data, by_notice.get(v.id, [])) for v in versions],
            },
        )

    return app


def _summary(r: Any, now: datetime) -> dict[str, Any]:
    data = r.data
    info = (data.get("infos") or [{}])[0]
    expires = info.get("expires")
    expired = bool(expires and datetime.fromisoformat(expires) <= now)
    return {
        "id": r.id,
        "headline": r.headline,
        "severity": r.severity,
        "state": r.state,
        "status": r.status,
        "msg_type": r.msg_type,
        "version": r.latest_version,
        "updated": r.updated_at,
        "sender": info.get("sender_name") or data.get("sender"),
        "areas": "; ".join(a.get("description", "") for a in info.get("areas", [])),
        "expired": expired,
    }
