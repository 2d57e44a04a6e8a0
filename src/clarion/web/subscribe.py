"""People subscribe from the public page (docs/subscriptions.md).

- `GET /subscribe`: the form. Without script it subscribes an e-mail address; with script (the
  one place the public page runs any, `static/subscribe.js`) it can also ask the browser for
  notifications (a service worker, `/sw.js`, and a Web Push subscription to this server's VAPID
  key) and fill the point from the browser's location.
- `POST /subscribe`: the form (e-mail), or JSON from the script (`{"kind": "webpush",
  "subscription": {...}, "interests": {...}}` or `{"kind": "email", "email": …}`). Limited per
  client; an e-mail address gets at most one confirmation a day, and the answer is the same
  whether one was sent or not.
- `/subscriptions/confirm/SECRET`: the confirmation link (a page with a button: mail scanners
  open links, only a person presses Confirm).
- `/subscriptions/TOKEN`: the management link: what it follows, pause, resume, change,
  unsubscribe.
- `/subscriptions/unsubscribe/KEY`: every mail's one-click unsubscribe (RFC 8058).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError

from clarion.config import Config
from clarion.model import Severity
from clarion.store import Store
from clarion.subscriptions import registry
from clarion.subscriptions.interests import Interests
from clarion.web.i18n import N_

log = logging.getLogger(__name__)

PER_HOUR = 20  # subscription requests per client an hour
MAX_BODY = 16 * 1024
STATIC = Path(__file__).parent / "static"
_SPLIT = re.compile(r"[,;\n]+")

CHOOSE = N_("Choose what to follow: an area, a place, a line, a service, a point, or a source.")
PRESS_UNSUB = N_(
    "Press Unsubscribe to stop these alerts. Everything about this subscription is deleted."
)
CONFIRMED = N_(
    "Confirmed: alerts will come to this address. The link in the mail changes or stops them."
)
MAIL_DOWN = N_("The confirmation mail could not be sent just now. Please try again later.")


def client_network(ip: str) -> str:
    """The network a client's requests are counted by: its /24 (IPv4) or /56 (IPv6, what one
    home or one cloud server is usually given), so walking through the addresses one holds
    buys no more requests."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 56
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def _list(value: str | None) -> list[str]:
    return [v.strip() for v in _SPLIT.split(value or "") if v.strip()]


def _interests_from_form(form: Any) -> Interests:
    lat, lon = (form.get("lat") or "").strip(), (form.get("lon") or "").strip()
    point = None
    if lat or lon:
        try:
            point = (float(lat), float(lon))
        except ValueError:
            raise ValueError(N_("The point's latitude and longitude must be numbers.")) from None
    sources = [s for s in form.getlist("sources") if s] or None
    return Interests(
        areas=[a for v in _list(form.get("areas")) for a in v.split()],
        places=_list(form.get("places")),
        routes=_list(form.get("routes")),
        stops=_list(form.get("stops")),
        components=_list(form.get("components")),
        languages=[x for v in _list(form.get("languages")) for x in v.split()] or None,
        point=point,
        sources=sources,
        min_severity=form.get("min_severity") or None,
    )


def subscribe_router(store: Store, config: Config) -> APIRouter:
    from clarion.channels.email import EmailChannelConfig
    from clarion.channels.webpush import WebPushChannelConfig
    from clarion.web.api import _client_ip
    from clarion.web.pages import templates_for

    # Pages and a form, not the API: kept out of the OpenAPI document.
    router = APIRouter(tags=["subscriptions"], include_in_schema=False)
    templates = templates_for(config.clarion.page_language)
    base = (config.clarion.public_url or "").rstrip("/")
    allow = tuple(config.clarion.networks())
    push_cfg = next(
        (c for c in config.channels.values() if isinstance(c, WebPushChannelConfig) and c.enabled),
        None,
    )
    mail_cfg = next(
        (
            c
            for c in config.channels.values()
            if isinstance(c, EmailChannelConfig) and c.enabled and c.subscribers
        ),
        None,
    )
    vapid_public: str | None = None
    if push_cfg is not None:
        from clarion.subscriptions.webpush import Vapid

        try:
            vapid_public = Vapid(push_cfg.vapid_private_key.resolve(), push_cfg.subject).public_key
        except ValueError as exc:
            log.error("web push subscriptions are off: the VAPID key cannot be read (%s)", exc)
            push_cfg = None
    area_index = None
    if config.subscriptions.areas is not None:
        from clarion.configtypes import ConfigError
        from clarion.subscriptions.areas import AreasError, load

        try:
            area_index = load(
                config.subscriptions.areas,
                config.subscriptions.area_code_property,
                config.subscriptions.area_name_property,
            )
        except AreasError as exc:
            raise ConfigError([f"subscriptions.areas: {exc}"]) from None

    area_svg: str | None = None
    if area_index is not None:
        from markupsafe import Markup

        from clarion.subscriptions.areas import area_map

        drawn = area_map(
            area_index,
            N_("Map of the areas you can follow; with script, a click on it chooses the point"),
        )
        area_svg = Markup(drawn) if drawn else None

    def codes_at(interests: Interests) -> list[str]:
        if area_index is None or interests.point is None:
            return []
        return [a.code for a in area_index.at(*interests.point)]

    common = {
        "publisher": config.clarion.publisher_name,
        "follow": config.clarion.follow,
        "fediverse": [],
        "sources": sorted(config.sources),
        "severities": [s.value for s in Severity if s is not Severity.UNKNOWN],
        "subscribe": True,
        "offers_push": push_cfg is not None,
        "offers_email": mail_cfg is not None,
        "vapid_public": vapid_public,
        "area_svg": area_svg,
    }

    def page(request: Request, name: str, status: int = 200, **values: Any) -> Response:
        resp = templates.TemplateResponse(request, name, {**common, **values}, status_code=status)
        resp.headers["Cache-Control"] = "no-store"  # personal, or a form
        resp.headers["Referrer-Policy"] = "no-referrer"  # the URL may hold a secret
        return resp

    def message(
        request: Request, title: str, text: str, status: int = 200, **more: Any
    ) -> Response:
        return page(request, "message.html", status, title=title, text=text, **more)

    def limited(request: Request) -> bool:
        from clarion.store.limits import api_hit

        who = f"subscribe:{client_network(_client_ip(request, config.api.trust_proxy))}"
        allowed, _, _ = api_hit(store, who, PER_HOUR, datetime.now(UTC).timestamp())
        return not allowed

    @router.get(
        "/subscribe", response_class=HTMLResponse, summary="Subscribe to alerts for your area"
    )
    def subscribe_form(request: Request) -> Response:
        if not (push_cfg or mail_cfg):
            return message(
                request,
                N_("Subscriptions"),
                N_("This publisher does not offer subscriptions. Follow the feeds instead."),
                404,
            )
        return page(request, "subscribe.html", values={}, problem=None)

    def _email(request: Request, address: str, interests: Interests, as_json: bool) -> Response:
        from clarion.subscriptions import mail

        assert mail_cfg is not None
        now = datetime.now(UTC)
        created = registry.create(
            store, "email", address, interests, now, point_codes=codes_at(interests)
        )
        if created.confirm is not None:
            msg = mail.confirmation(
                mail_cfg.sender,
                address,
                config.clarion.publisher_name,
                f"{base}/subscriptions/confirm/{created.confirm}",
                f"{base}/subscriptions/{created.token}",
            )
            password = mail_cfg.password.resolve() if mail_cfg.password else None
            try:
                mail.send(mail_cfg, password, msg)
            except Exception as exc:  # aiosmtplib's errors, OSError: the mail server is down
                log.warning("confirmation mail not sent: %s", exc)
                registry.remove(store, created.token)
                text = MAIL_DOWN
                if as_json:
                    return JSONResponse({"detail": text}, status_code=503)
                return message(request, N_("Try again later"), text, 503)
        text = N_(
            "If this address can receive mail, a confirmation link is on its way. "
            "Nothing is sent before you press Confirm on the page it opens."
        )
        if as_json:
            return JSONResponse({"detail": text}, status_code=202)
        return message(request, N_("Check your mail"), text, 202)

    @router.post("/subscribe", summary="Subscribe (the form, or JSON from the page's script)")
    async def subscribe(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        as_json = "json" in request.headers.get("content-type", "")
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"detail": "request too large"}, status_code=413)
        form = None if as_json else await request.form()
        # The database and the mail server are blocking: off the event loop.
        return await run_in_threadpool(_subscribe, request, as_json, body, form)

    def _subscribe(request: Request, as_json: bool, body: bytes, form: Any) -> Response:
        if limited(request):
            text = N_("Too many subscription requests from your address. Try again in an hour.")
            if as_json:
                return JSONResponse(
                    {"detail": text}, status_code=429, headers={"Retry-After": "3600"}
                )
            return message(request, N_("Try again later"), text, 429)
        try:
            if as_json:
                import json

                data = json.loads(body or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("expected a JSON object")
                kind = data.get("kind")
                interests = Interests.model_validate(data.get("interests") or {})
                address = data.get("email")
                push_sub = data.get("subscription") or {}
            else:
                kind = "email"
                interests = _interests_from_form(form)
                address = form.get("email")
                push_sub = {}
            if not interests.follows_something():
                raise ValueError(CHOOSE)
            if kind == "webpush":
                if push_cfg is None:
                    raise ValueError(N_("This publisher does not offer browser notifications."))
                from clarion.subscriptions.webpush import check_subscription

                if not isinstance(push_sub, dict) or not isinstance(push_sub.get("keys"), dict):
                    raise ValueError("subscription: expected {endpoint, keys: {p256dh, auth}}")
                endpoint = str(push_sub.get("endpoint") or "")
                keys = push_sub["keys"]
                p256dh, auth = str(keys.get("p256dh") or ""), str(keys.get("auth") or "")
                check_subscription(endpoint, p256dh, auth, allow)
                created = registry.create(
                    store,
                    "webpush",
                    endpoint,
                    interests,
                    datetime.now(UTC),
                    p256dh=p256dh,
                    auth=auth,
                    point_codes=codes_at(interests),
                )
                return JSONResponse(
                    {"manage": f"{base}/subscriptions/{created.token}"}, status_code=201
                )
            if kind != "email":
                raise ValueError("kind: webpush or email")
            if mail_cfg is None:
                raise ValueError(N_("This publisher does not offer e-mail alerts."))
            if not isinstance(address, str):
                raise ValueError(N_("That is not an e-mail address."))
            from clarion.subscriptions.mail import canonical_email

            return _email(request, canonical_email(address), interests, as_json)
        except ValidationError as exc:
            problem = "; ".join(
                f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
            )
        except ValueError as exc:
            problem = str(exc)
        if as_json:
            return JSONResponse({"detail": problem}, status_code=422)
        return page(
            request, "subscribe.html", 422, values=dict(request.query_params), problem=problem
        )

    @router.get(
        "/subscriptions/confirm/{secret}",
        response_class=HTMLResponse,
        summary="Confirm an e-mail subscription (a page with a button)",
    )
    def confirm_page(request: Request, secret: str) -> Response:
        return message(
            request,
            N_("Confirm your subscription"),
            N_("Press Confirm to start receiving alerts at this address."),
            form_action=f"/subscriptions/confirm/{secret}",
            button=N_("Confirm"),
        )

    @router.post(
        "/subscriptions/confirm/{secret}",
        response_class=HTMLResponse,
        summary="Confirm an e-mail subscription",
    )
    def confirm(request: Request, secret: str) -> Response:
        row = registry.confirm(store, secret[:100], datetime.now(UTC))
        if row is None:
            return message(
                request,
                N_("Link not valid"),
                N_("This confirmation link is not valid any more. Subscribe again if you wish."),
                404,
            )
        return message(
            request,
            N_("Subscribed"),
            CONFIRMED,
        )

    @router.get(
        "/subscriptions/unsubscribe/{key}",
        response_class=HTMLResponse,
        summary="Unsubscribe (a page with a button)",
    )
    def unsubscribe_page(request: Request, key: str) -> Response:
        return message(
            request,
            N_("Unsubscribe"),
            PRESS_UNSUB,
            form_action=f"/subscriptions/unsubscribe/{key}",
            button=N_("Unsubscribe"),
        )

    @router.post("/subscriptions/unsubscribe/{key}", summary="One-click unsubscribe (RFC 8058)")
    def unsubscribe(request: Request, key: str) -> Response:
        registry.remove_by_unsubscribe_key(store, key[:100])
        # The same answer whether it existed: the link says nothing about who is subscribed.
        return message(
            request, N_("Unsubscribed"), N_("You will not receive these alerts any more.")
        )

    @router.get(
        "/subscriptions/{token}", response_class=HTMLResponse, summary="Manage a subscription"
    )
    def manage(request: Request, token: str) -> Response:
        row = registry.by_token(store, token[:100])
        if row is None:
            return message(
                request,
                N_("Link not valid"),
                N_("There is no subscription at this link (any more)."),
                404,
            )
        interests = Interests.model_validate(row.interests)
        described = interests.describe()
        if area_index is not None and interests.point is not None:
            names = [a.name for a in area_index.at(*interests.point)]
            if names:
                described += " (" + ", ".join(names) + ")"
        return page(
            request,
            "manage.html",
            area_svg=None,  # the management page runs no script: no map to click
            sub=row,
            described=described,
            values=_form_values(interests),
            token=token,
            problem=None,
        )

    @router.post(
        "/subscriptions/{token}",
        response_class=HTMLResponse,
        summary="Change, pause, resume or end a subscription",
    )
    async def manage_post(request: Request, token: str) -> Response:
        token = token[:100]
        form = await request.form()
        action = form.get("action")
        now = datetime.now(UTC)
        if action == "unsubscribe":
            registry.remove(store, token)
            return message(
                request, N_("Unsubscribed"), N_("You will not receive these alerts any more.")
            )
        if action in ("pause", "resume"):
            registry.set_paused(store, token, action == "pause", now)
        elif action == "change":
            try:
                interests = _interests_from_form(form)
                if not interests.follows_something():
                    raise ValueError(CHOOSE)
            except (ValidationError, ValueError) as exc:
                row = registry.by_token(store, token)
                if row is None:
                    return message(
                        request,
                        N_("Link not valid"),
                        N_("There is no subscription at this link (any more)."),
                        404,
                    )
                return page(
                    request,
                    "manage.html",
                    422,
                    area_svg=None,
                    sub=row,
                    described=Interests.model_validate(row.interests).describe(),
                    values=dict(form),
                    token=token,
                    problem=str(exc),
                )
            registry.change(store, token, interests, now, point_codes=codes_at(interests))
        return Response(status_code=303, headers={"Location": f"/subscriptions/{token}"})

    @router.get("/sw.js", summary="The service worker that shows this publisher's notifications")
    def service_worker() -> Response:
        return Response(
            (STATIC / "sw.js").read_bytes(),
            media_type="text/javascript",
            headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"},
        )

    @router.get("/subscribe.js", summary="The subscribe form's script")
    def subscribe_script() -> Response:
        return Response(
            (STATIC / "subscribe.js").read_bytes(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    return router


def _form_values(i: Interests) -> dict[str, str]:
    return {
        "areas": ", ".join(i.areas),
        "places": ", ".join(i.places),
        "routes": ", ".join(i.routes),
        "stops": ", ".join(i.stops),
        "languages": ", ".join(i.languages or []),
        "components": ", ".join(i.components),
        "lat": f"{i.point[0]}" if i.point else "",
        "lon": f"{i.point[1]}" if i.point else "",
        "min_severity": i.min_severity.value if i.min_severity else "",
        "sources": ",".join(i.sources or []),
    }
