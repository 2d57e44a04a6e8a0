"""The operator's desk at `/desk`: live status, compose with previews, approval, audit.

Server-rendered HTML (Jinja2). Every page works without script; `static/desk.js` adds what
htmx would: it re-fetches the live panel when the server-sent event stream says something
changed, and refreshes the compose previews as the form is edited.

Departure from the issue (htmx): htmx is not on PyPI (the name there is an empty 0.0.0
placeholder), the project copies no code from other repositories, and fetching it from npm
would add Node.js or a download step to installing Clarion. The two behaviours the desk needs
fit in `desk.js` (about 80 lines, no dependencies).

Security: a session cookie (HttpOnly, SameSite=Strict, Secure behind https; only its hash is
stored), a per-session CSRF token on every form and a same-origin check on every POST, login
throttling counted in the database (so it holds across replicas), roles checked on the server
for every action, and every action written to the audit log with who, when and from where.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from clarion import credentials
from clarion.channels.base import Channel
from clarion.config import Config
from clarion.delivery import outbox
from clarion.desk import accounts, audit, drafts
from clarion.desk.accounts import Session
from clarion.desk.templates import BUILTIN, load_template, save_template, template_names
from clarion.manual import NoticeIn
from clarion.model import Certainty, Severity, Status, Urgency
from clarion.status import channel_statuses, source_statuses
from clarion.store import Store, public
from clarion.store import desk as desk_reads

PREFIX = "/desk"
COOKIE = "clarion_desk"
HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
CATEGORIES = (
    "Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
    "CBRNE", "Other",
)  # fmt: skip


class _Redirect(Exception):
    def __init__(self, url: str) -> None:
        self.url = url


def plain_error(kind: str | None, error: str | None, next_at: datetime | None, fmt: Any) -> str:
    """A delivery's last error in words an operator on duty can act on."""
    if not error:
        return ""
    when = f" Next try {fmt(next_at)}." if next_at else ""
    if kind == "auth":
        return (
            "The platform refused our credentials (revoked or expired). Fix the channel's "
            f"credential, then resume the channel. ({error})"
        )
    if kind == "rate_limited":
        return f"The platform asked us to slow down; waiting as it asked.{when} ({error})"
    if kind == "permanent":
        return f"The platform will not accept this post as it is; it will not be retried. ({error})"
    return f"The platform did not answer properly; trying again with backoff.{when} ({error})"


@dataclass
class _Ctx:
    store: Store
    config: Config
    channels: Mapping[str, Channel]
    tz: ZoneInfo

    def fmt(self, t: datetime | None) -> str:
        if t is None:
            return "—"
        return t.astimezone(self.tz).strftime("%Y-%m-%d %H:%M %Z")


def desk_router(store: Store, config: Config, channels: Mapping[str, Channel] | None) -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    tz = ZoneInfo(config.desk.timezone)
    secure = (config.clarion.public_url or "").startswith("https://")
    from clarion.channels import lazy_channels

    the_channels = lazy_channels(config, channels)
    from clarion.desk.passwords import Busy, PasswordPool

    passwords = PasswordPool()  # password checks' own threads (clarion.desk.passwords)

    def ctx() -> _Ctx:
        return _Ctx(store, config, the_channels(), tz)

    def now() -> datetime:
        return datetime.now(UTC)

    def client_ip(request: Request) -> str | None:
        if config.api.trust_proxy:
            fwd = request.headers.get("x-forwarded-for")
            if fwd:
                return fwd.split(",")[-1].strip()[:64]
        return request.client.host if request.client else None

    def session_of(request: Request) -> Session | None:
        token = request.cookies.get(COOKIE)
        return accounts.session(store, token, now()) if token else None

    def need(request: Request, role: str = "viewer") -> Session:
        s = session_of(request)
        if s is None:
            raise _Redirect(f"{PREFIX}/login?next={quote(request.url.path)}")
        if not s.user.can(role):
            raise HTTPException(403, f"This needs the {role} role; you are {s.user.role}.")
        return s

    async def posted(request: Request, role: str) -> tuple[Session, FormData]:
        """A form POST: signed in with `role`, same origin, and the session's CSRF token."""
        s = need(request, role)
        _same_origin(request)
        form = await request.form()
        token = str(form.get("csrf") or request.headers.get("x-csrf-token") or "")
        if not hmac.compare_digest(token, s.csrf):
            raise HTTPException(403, "The form expired or did not come from the desk; reload it.")
        return s, form

    def page(request: Request, template: str, s: Session | None, **values: Any) -> HTMLResponse:
        pending = 0
        if s is not None:
            with store.read() as conn:
                pending = desk_reads.awaiting_approval(conn)
        resp = TEMPLATES.TemplateResponse(
            request,
            template,
            {
                "s": s,
                "publisher": config.clarion.publisher_name,
                "fmt": ctx().fmt,
                "awaiting": pending,
                "tzname": config.desk.timezone,
                **values,
            },
        )
        resp.headers["Cache-Control"] = "no-store"
        return resp

    # --- Sign in ------------------------------------------------------------------------------

    def login_page(
        request: Request, next: str, error: str | None, no_users: bool, status: int = 200
    ) -> HTMLResponse:
        """The login form, with a fresh token in a cookie and in the form (double submit):
        a login can only be posted by a page the desk served to this browser."""
        token = secrets.token_urlsafe(24)
        resp = page(
            request, "desk/login.html", None, next=next, error=error, no_users=no_users,
            login_csrf=token,
        )  # fmt: skip
        resp.status_code = status
        resp.set_cookie(
            LOGIN_COOKIE, token, max_age=3600, path=PREFIX, httponly=True, secure=secure,
            samesite="strict",
        )  # fmt: skip
        return resp

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = PREFIX) -> HTMLResponse:
        return login_page(request, _safe_next(next), None, not accounts.any_users(store))

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        _same_origin(request)
        form = await request.form()
        # Argon2 is made to be slow: checking a password never runs on the event loop (60
        # failed logins would stall every other request, health checks included), nor in the
        # thread pool every other synchronous handler shares (40 would hold all of it).
        try:
            async with passwords.admitted():
                return await run_in_threadpool(sign_in, request, form)
        except Busy:
            return login_page(
                request, PREFIX, "Too many logins at once; try again in a moment.", False, 429
            )

    def sign_in(request: Request, form: FormData) -> Response:
        username = str(form.get("username") or "")
        target = _safe_next(str(form.get("next") or PREFIX))
        cookie = request.cookies.get(LOGIN_COOKIE) or ""
        token = str(form.get("csrf") or "")
        if not cookie or not hmac.compare_digest(cookie, token):
            return login_page(request, target, "The form expired; log in again.", False, status=403)
        try:
            user = accounts.authenticate(
                store,
                username,
                str(form.get("password") or ""),
                now(),
                ip=client_ip(request),
                max_failures=config.desk.login_max_failures,
                window=config.desk.login_window,
                checks=passwords.run,
            )
        except accounts.LoginRefused as exc:
            return login_page(request, target, str(exc), False, 429 if exc.throttled else 401)
        token = accounts.start_session(
            store,
            user,
            now(),
            config.desk.session_lifetime,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
        redirect = RedirectResponse(target, status_code=303)
        redirect.set_cookie(
            COOKIE,
            token,
            max_age=int(config.desk.session_lifetime),
            path=PREFIX,
            httponly=True,
            secure=secure,
            samesite="strict",
        )
        return redirect

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        await posted(request, "viewer")
        token = request.cookies.get(COOKIE)
        if token:
            accounts.end_session(store, token, now(), ip=client_ip(request))
        resp = RedirectResponse(f"{PREFIX}/login", status_code=303)
        resp.delete_cookie(COOKIE, path=PREFIX)
        return resp

    # --- Live status --------------------------------------------------------------------------

    @router.get("", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        s = need(request)
        return page(request, "desk/status.html", s, **_status(ctx()))

    @router.get("/live", response_class=HTMLResponse)
    def live(request: Request) -> HTMLResponse:
        s = need(request)
        return page(request, "desk/_live.html", s, **_status(ctx()))

    @router.get("/events")
    async def events(request: Request) -> StreamingResponse:
        need(request)
        return StreamingResponse(
            _changes(store, request, config.api.stream_poll),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get("/threads/{thread_id}", response_class=HTMLResponse)
    def thread_page(request: Request, thread_id: int) -> HTMLResponse:
        s = need(request)
        return page(request, "desk/thread.html", s, **_thread(ctx(), thread_id))

    # --- Compose ------------------------------------------------------------------------------

    def compose_page(
        request: Request,
        s: Session,
        *,
        action: str,
        thread_id: int | None,
        values: dict[str, Any],
        errors: dict[str, str],
        body: NoticeIn | None,
        status_code: int = 200,
        message: str | None = None,
    ) -> HTMLResponse:
        pv = None
        if body is not None:
            try:
                pv = drafts.preview(store, config, the_channels(), action, body, thread_id)
            except drafts.DeskError as exc:
                errors = {**errors, "_": str(exc)}
        thread = None
        if thread_id is not None:
            with store.read() as conn:
                thread = public.thread(conn, thread_id)
        resp = page(
            request,
            "desk/compose.html",
            s,
            action=action,
            thread=thread,
            v=values,
            errors=errors,
            preview=pv,
            message=message,
            templates=template_names(store),
            categories=CATEGORIES,
            severities=[x.value for x in Severity],
            urgencies=[x.value for x in Urgency],
            certainties=[x.value for x in Certainty],
            statuses=[Status.ACTUAL.value, Status.EXERCISE.value, Status.TEST.value],
        )
        resp.status_code = status_code
        return resp

    @router.get("/compose", response_class=HTMLResponse)
    def compose(
        request: Request,
        template: str | None = None,
        follow: str | None = None,
        thread: int | None = None,
    ) -> HTMLResponse:
        s = need(request, "editor")
        action = follow if follow in ("update", "cancel", "correction") else "alert"
        if action != "alert":
            if thread is None:
                raise HTTPException(400, f"an {action} needs ?thread=ID")
            try:
                _, previous = drafts.latest(store, thread)
            except drafts.DeskError as exc:
                raise HTTPException(404, str(exc)) from None
            body: NoticeIn | None = drafts.prefill(action, previous)
        else:
            thread = None
            body = load_template(store, template) if template else None
        values = _values(body, tz) if body else {"status": "actual", "categories": ["Other"]}
        return compose_page(
            request, s, action=action, thread_id=thread, values=values, errors={}, body=body
        )

    @router.post("/compose", response_class=HTMLResponse)
    async def compose_post(request: Request) -> Response:
        s, form = await posted(request, "editor")
        return await run_in_threadpool(compose_post_work, request, s, form)

    def compose_post_work(request: Request, s: Session, form: FormData) -> Response:
        # The work itself runs off the event loop (rendering, the database): other requests
        # (health checks, the page) never wait for it.
        action = str(form.get("action") or "alert")
        thread_id = _int(form.get("thread"))
        body, send_at, errors = _parse(form, tz)
        values = _raw(form)
        intent = str(form.get("intent") or "submit")
        if intent == "save_template" and not str(form.get("template_name") or "").strip():
            errors["template_name"] = "Give the template a name."
        if body is None or errors or intent == "preview":
            return compose_page(
                request,
                s,
                action=action,
                thread_id=thread_id,
                values=values,
                errors=errors,
                body=body,
                status_code=422 if errors else 200,
            )
        if intent == "save_template":
            name = str(form.get("template_name") or "").strip()
            save_template(store, name, body, s.user.username, now(), ip=client_ip(request))
            return compose_page(
                request,
                s,
                action=action,
                thread_id=thread_id,
                values=values,
                errors={},
                body=body,
                message=f"Saved as template “{name}”.",
            )
        try:
            d = drafts.submit(
                store,
                config,
                the_channels(),
                s.user,
                action,
                body,
                thread_id=thread_id,
                send_at=send_at,
                now=now(),
                ip=client_ip(request),
            )
        except drafts.DeskError as exc:
            return compose_page(
                request,
                s,
                action=action,
                thread_id=thread_id,
                values=values,
                errors={"_": str(exc)},
                body=body,
                status_code=409,
            )
        return RedirectResponse(f"{PREFIX}/drafts/{d.id}", status_code=303)

    @router.post("/preview", response_class=HTMLResponse)
    async def preview(request: Request) -> HTMLResponse:
        s, form = await posted(request, "editor")
        return await run_in_threadpool(preview_work, request, s, form)

    def preview_work(request: Request, s: Session, form: FormData) -> HTMLResponse:
        # The work itself runs off the event loop (rendering, the database): other requests
        # (health checks, the page) never wait for it.
        action = str(form.get("action") or "alert")
        body, _, errors = _parse(form, tz)
        pv = None
        if body is not None and not errors:
            try:
                pv = drafts.preview(
                    store, config, the_channels(), action, body, _int(form.get("thread"))
                )
            except drafts.DeskError as exc:
                errors = {"_": str(exc)}
        return page(request, "desk/_preview.html", s, preview=pv, errors=errors)

    # --- Drafts and approval ------------------------------------------------------------------

    @router.get("/drafts", response_class=HTMLResponse)
    def drafts_page(request: Request) -> HTMLResponse:
        s = need(request)
        return page(
            request,
            "desk/drafts.html",
            s,
            waiting=drafts.listing(store, ("awaiting_approval",), 100),
            scheduled=drafts.listing(store, ("scheduled",), 100),
            recent=drafts.listing(store, ("sent", "rejected", "withdrawn", "failed"), 50),
        )

    @router.get("/drafts/{draft_id}", response_class=HTMLResponse)
    def draft_page(request: Request, draft_id: int, error: str | None = None) -> HTMLResponse:
        s = need(request)
        try:
            d = drafts.get(store, draft_id)
        except drafts.DeskError as exc:
            raise HTTPException(404, str(exc)) from None
        pv = None
        if d.state in drafts.OPEN_STATES:
            try:
                pv = drafts.preview(store, config, the_channels(), d.action, d.body, d.thread_id)
            except drafts.DeskError as exc:
                error = error or str(exc)
        thread_id = d.thread_id
        if d.notice_id is not None:
            with store.read() as conn:
                thread_id = public.thread_of_notice(conn, d.notice_id)
        return page(
            request, "desk/draft.html", s, d=d, preview=pv, error=error, thread_id=thread_id
        )

    @router.post("/drafts/{draft_id}/{decision}")
    async def decide(request: Request, draft_id: int, decision: str) -> Response:
        if decision not in ("approve", "reject", "withdraw"):
            raise HTTPException(404)
        s, form = await posted(request, "viewer")
        return await run_in_threadpool(decide_work, request, s, form, draft_id, decision)

    def decide_work(
        request: Request, s: Session, form: FormData, draft_id: int, decision: str
    ) -> Response:
        # The work itself runs off the event loop (rendering, the database): other requests
        # (health checks, the page) never wait for it.
        try:
            if decision == "approve":
                drafts.approve(
                    store,
                    config,
                    the_channels(),
                    draft_id,
                    s.user,
                    now=now(),
                    ip=client_ip(request),
                )
            else:
                drafts.close(
                    store,
                    draft_id,
                    s.user,
                    decision,
                    str(form.get("reason") or "")[:2000],
                    now=now(),
                    ip=client_ip(request),
                )
        except drafts.DeskError as exc:
            return RedirectResponse(
                f"{PREFIX}/drafts/{draft_id}?error={quote(str(exc))}", status_code=303
            )
        return RedirectResponse(f"{PREFIX}/drafts/{draft_id}", status_code=303)

    # --- Outbox and channels ------------------------------------------------------------------

    @router.post("/deliveries/{delivery_id}/{op}")
    async def delivery_op(request: Request, delivery_id: str, op: str) -> Response:
        if op not in ("retry", "cancel"):
            raise HTTPException(404)
        s, form = await posted(request, "editor")
        return await run_in_threadpool(delivery_op_work, request, s, form, delivery_id, op)

    def delivery_op_work(
        request: Request, s: Session, form: FormData, delivery_id: str, op: str
    ) -> Response:
        # The work itself runs off the event loop (rendering, the database): other requests
        # (health checks, the page) never wait for it.
        fn = outbox.operator_retry if op == "retry" else outbox.operator_cancel
        why = fn(store, delivery_id, now(), s.user.username)
        if why is None:
            audit.log(
                store,
                now(),
                s.user.username,
                "retry" if op == "retry" else "cancel_delivery",
                target=f"delivery {delivery_id}",
                ip=client_ip(request),
            )
        back = _safe_next(str(form.get("back") or PREFIX))
        sep = "&" if "?" in back else "?"
        return RedirectResponse(back + (f"{sep}error={quote(why)}" if why else ""), status_code=303)

    @router.post("/subscriptions/test")
    async def subscription_test(request: Request) -> Response:
        s, form = await posted(request, "editor")
        return await run_in_threadpool(subscription_test_work, request, s, form)

    def subscription_test_work(request: Request, s: Session, form: FormData) -> Response:
        """A test message to one subscription only: the operator's own, named by its
        management link (which only its owner has). Nothing is queued, nobody else gets it."""
        from clarion.subscriptions import registry as subscribers

        link = str(form.get("link") or "").strip()
        token = link.rstrip("/").rsplit("/", 1)[-1][:100]
        row = subscribers.by_token(store, token) if token else None
        why: str | None = None
        if row is None:
            why = "That is not a subscription's management link."
        elif row.state != "active":
            why = f"That subscription is {row.state}, not active."
        else:
            channel = next(
                (c for c in the_channels().values()
                 if getattr(c, "subscription_kind", None) == row.kind),
                None,
            )  # fmt: skip
            if channel is None:
                why = f"No channel sends to {row.kind} subscribers."
            else:
                why = channel.send_test(  # type: ignore[attr-defined]
                    row,
                    f"Test from {config.clarion.publisher_name}",
                    "This is a test of your alerts. Nothing is happening.",
                    (config.clarion.public_url or "").rstrip("/") + "/",
                )
                audit.log(
                    store, now(), s.user.username, "subscription_test",
                    target=f"{row.kind} subscription", detail=why or "sent",
                    ip=client_ip(request),
                )  # fmt: skip
        note = f"error={quote(why)}" if why else "message=" + quote("Test sent.")
        return RedirectResponse(f"{PREFIX}?{note}", status_code=303)

    @router.post("/channels/{name}/resume")
    async def channel_resume(request: Request, name: str) -> Response:
        s, _form = await posted(request, "admin")
        return await run_in_threadpool(channel_resume_work, request, s, name)

    def channel_resume_work(request: Request, s: Session, name: str) -> Response:
        # Off the event loop, as every form's work.
        if outbox.set_channel_state(store, name, "active", None, now()):
            audit.log(
                store,
                now(),
                s.user.username,
                "channel_resume",
                target=f"channel {name}",
                ip=client_ip(request),
            )
        return RedirectResponse(PREFIX, status_code=303)

    @router.get("/channels/{name}/credentials", response_class=HTMLResponse)
    def credentials_form(request: Request, name: str, error: str | None = None) -> HTMLResponse:
        s = need(request, "admin")
        return page(request, "desk/credentials.html", s, **_credentials(config, store, name, error))

    @router.post("/channels/{name}/credentials", response_class=HTMLResponse)
    async def credentials_save(request: Request, name: str) -> Response:
        s, form = await posted(request, "admin")
        return await run_in_threadpool(credentials_save_work, request, s, form, name)

    def credentials_save_work(request: Request, s: Session, form: FormData, name: str) -> Response:
        # The work itself runs off the event loop (rendering, the database): other requests
        # (health checks, the page) never wait for it.
        info = _credentials(config, store, name, None)
        entered = {
            f: str(form.get(f) or "") for f in info["fields"] if str(form.get(f) or "").strip()
        }
        if not entered:
            return page(
                request,
                "desk/credentials.html",
                s,
                **_credentials(config, store, name, "Enter at least one new value."),
            )
        try:
            keys = credentials.keyring(config)
            for field, value in entered.items():
                credentials.put(store, keys, name, field, value.strip(), s.user.username, now())
        except credentials.CredentialError as exc:
            return page(
                request, "desk/credentials.html", s, **_credentials(config, store, name, str(exc))
            )
        outbox.set_channel_state(store, name, "active", None, now())
        audit.log(
            store,
            now(),
            s.user.username,
            "credential_set",
            target=f"channel {name}",
            detail=f"replaced {', '.join(sorted(entered))} (stored encrypted); channel resumed",
            ip=client_ip(request),
        )
        return RedirectResponse(f"{PREFIX}#channel-{name}", status_code=303)

    # --- Audit --------------------------------------------------------------------------------

    def audit_filter(request: Request) -> audit.AuditFilter:
        q = request.query_params

        def day(name: str) -> datetime | None:
            raw = q.get(name)
            if not raw:
                return None
            try:
                d = datetime.fromisoformat(raw)
            except ValueError:
                raise HTTPException(400, f"{name}: a date like 2026-11-27") from None
            return (d if d.tzinfo else d.replace(tzinfo=tz)).astimezone(UTC)

        until = day("until")
        if until is not None and len(q.get("until", "")) <= 10:  # a whole day: up to its end
            until += timedelta(days=1)
        return audit.AuditFilter(
            actor=q.get("actor") or None,
            action=q.get("action") or None,
            since=day("since"),
            until=until,
            text=(q.get("q") or None),
        )

    @router.get("/audit", response_class=HTMLResponse)
    def audit_page(request: Request) -> HTMLResponse:
        s = need(request)
        flt = audit_filter(request)
        rows = audit.entries(store, flt, limit=500)
        with store.read() as conn:
            actors = desk_reads.audit_actors(conn)
        return page(
            request,
            "desk/audit.html",
            s,
            rows=rows,
            flt=flt,
            q=dict(request.query_params),
            actions=audit.ACTIONS,
            actors=sorted(actors),
            csv_url=f"{PREFIX}/audit.csv" + (f"?{request.url.query}" if request.url.query else ""),
        )

    @router.get("/audit.csv")
    def audit_csv(request: Request) -> Response:
        need(request)
        rows = audit.entries(store, audit_filter(request), limit=0)
        stamp = now().strftime("%Y%m%d-%H%M")
        return Response(
            audit.to_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="clarion-audit-{stamp}.csv"',
                "Cache-Control": "no-store",
            },
        )

    return router


def install_desk(
    app: Any, store: Store, config: Config, channels: Mapping[str, Channel] | None
) -> None:
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="desk-static")
    app.include_router(desk_router(store, config, channels))

    async def to_login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Redirect)
        if request.url.path in (f"{PREFIX}/live", f"{PREFIX}/events", f"{PREFIX}/preview"):
            return Response("signed out", status_code=401)  # script requests: no redirect
        return RedirectResponse(exc.url, status_code=303)

    app.add_exception_handler(_Redirect, to_login)


# --- Helpers ------------------------------------------------------------------------------------


def _credentials(config: Config, store: Store, name: str, error: str | None) -> dict[str, Any]:
    """What the credential form shows: each secret field and where its value comes from now
    (never the value itself)."""
    if name not in config.channels:
        raise HTTPException(404, f"There is no channel {name!r}.")
    fields = credentials.secret_fields(config, name)
    stored = credentials.info(store)
    cfg = config.channels[name]
    rows = []
    for f in fields:
        ref = getattr(cfg, f, None)
        source: tuple[str, str, datetime | None]
        if (name, f) in stored:
            who, when = stored[(name, f)]
            source = ("desk", who, when)
        else:
            source = ("config", ref.describe() if ref is not None else "not set", None)
        rows.append({"field": f, "source": source})
    try:
        ready = credentials.keyring(config) is not None
    except credentials.CredentialError as exc:
        ready, error = False, error or str(exc)
    return {"name": name, "kind": cfg.kind, "fields": fields, "rows": rows, "ready": ready,
            "error": error}  # fmt: skip


LOGIN_COOKIE = "clarion_login"


def _same_origin(request: Request) -> None:
    """Refuse a POST that a browser says came from another site (CSRF, defence in depth)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return  # not a browser, or one that sends neither: the CSRF token still decides
    if origin == "null":  # a sandboxed frame, a data: URL, a file: another site in disguise
        raise HTTPException(403, "This form was sent from an opaque origin; the desk refused it.")
    host = request.headers.get("host", "")
    if urlsplit(origin).netloc != host:
        raise HTTPException(403, "This form was sent from another site; the desk refused it.")


def _safe_next(target: str) -> str:
    """Only a path on the desk: never an open redirect to another site."""
    if not target.startswith(PREFIX) or target.startswith("//") or "\\" in target:
        return PREFIX
    return target


def _int(value: Any) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _raw(form: FormData) -> dict[str, Any]:
    out: dict[str, Any] = {k: str(v) for k, v in form.items() if k != "csrf"}
    out["categories"] = [str(c) for c in form.getlist("categories")]
    return out


def _local(value: str, tz: ZoneInfo) -> datetime:
    d = datetime.fromisoformat(value)
    return (d if d.tzinfo else d.replace(tzinfo=tz)).astimezone(UTC)


def _parse(form: FormData, tz: ZoneInfo) -> tuple[NoticeIn | None, datetime | None, dict[str, str]]:
    """The compose form as a NoticeIn, the time to send it, and errors by field."""
    errors: dict[str, str] = {}

    def text(name: str) -> str | None:
        v = str(form.get(name) or "").strip()
        return v or None

    times: dict[str, datetime | None] = {}
    for name in ("expires", "send_at"):
        raw = text(name)
        try:
            times[name] = _local(raw, tz) if raw else None
        except ValueError:
            errors[name] = "A date and time like 2026-11-27 18:30."
    geocodes: list[dict[str, str]] = []  # validated with the rest, below
    for item in (text("geocodes") or "").replace(",", " ").split():
        name, sep, value = item.partition(":")
        if not sep or not name or not value:
            errors["geocodes"] = f"{item[:80]!r}: write codes as NAME:VALUE, e.g. UGC:MTZ014."
            break
        geocodes.append({"name": name.upper(), "value": value})
    area = text("area")
    data = {
        "headline": text("headline") or "",
        "event": text("event"),
        "description": text("description"),
        "instruction": text("instruction"),
        "severity": text("severity") or "unknown",
        "urgency": text("urgency") or "unknown",
        "certainty": text("certainty") or "unknown",
        "categories": [str(c) for c in form.getlist("categories")] or ["Other"],
        "status": text("status") or "actual",
        "web": text("web"),
        "language": text("language"),
        "expires": times.get("expires"),
        "areas": [{"description": area, "geocodes": geocodes}] if area else [],
    }
    if geocodes and not area:
        errors["area"] = "Name the area the codes describe."
    try:
        body = NoticeIn.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else "_"
            errors.setdefault(field, _message(field, err["msg"]))
        return None, None, errors
    return body, times.get("send_at"), errors


def _message(field: str, msg: str) -> str:
    if field == "headline":
        return "A headline is required (at most 500 characters)."
    if field == "web":
        return "A link starts with https:// or http://."
    return msg.removeprefix("Value error, ")


def _values(body: NoticeIn, tz: ZoneInfo) -> dict[str, Any]:
    """A NoticeIn as the compose form's field values."""
    area = body.areas[0] if body.areas else None
    return {
        "headline": body.headline,
        "event": body.event or "",
        "description": body.description or "",
        "instruction": body.instruction or "",
        "severity": body.severity.value,
        "urgency": body.urgency.value,
        "certainty": body.certainty.value,
        "categories": list(body.categories),
        "status": body.status.value,
        "web": body.web or "",
        "language": body.language or "",
        "area": area.description if area else "",
        "geocodes": " ".join(f"{g.name}:{g.value}" for g in area.geocodes) if area else "",
        "expires": body.expires.astimezone(tz).strftime("%Y-%m-%dT%H:%M") if body.expires else "",
    }


def _status(c: _Ctx) -> dict[str, Any]:
    """Everything the live panel shows, read in one go."""
    store, config, now = c.store, c.config, datetime.now(UTC)
    with store.read() as conn:
        panel = desk_reads.live_panel(conn)
    recent, cells, problems = panel["recent"], panel["cells"], panel["problems"]
    chans = []
    health = channel_statuses(store, config, now)
    for ch in health:
        limited = next(
            (
                d
                for d in problems
                if d.channel == ch.name
                and d.error_kind == "rate_limited"
                and d.state == "retry_wait"
            ),
            None,
        )
        q = ch.queue
        chans.append(
            {
                "name": ch.name,
                "kind": ch.kind,
                "state": ch.state,
                "reason": ch.state_reason,
                "rate_limited_until": limited.next_attempt_at if limited else None,
                "waiting": q.get("pending", 0),
                "retrying": q.get("retry_wait", 0),
                "failed": q.get("failed", 0),
                "sent": q.get("sent", 0),
                "today": ch.posts_today,
                "month": ch.posts_this_month,
                "spend": ch.spend_this_month,
                "daily_cap": ch.daily_cap,
                "monthly_cap": ch.monthly_cap,
                "budget": ch.monthly_budget,
                "statuses": ch.statuses,
                "followers": _followers(store, config.channels[ch.name]),
            }
        )
    srcs = []
    for h in source_statuses(store, config, sample=20):
        push = config.sources[h.name].kind == "push"
        srcs.append(
            {
                "name": h.name,
                "kind": h.kind,
                "healthy": not h.failing if push else (h.state != "never polled" and not h.failing),
                "last_success": h.last_success_at,
                "failures": h.consecutive_failures,
                "error": h.last_error if h.failing else None,
                "delay": max(0.0, h.latency_p50) if h.latency_p50 is not None else None,
                "notices": h.notices_ingested,
                "rejected": h.rejected[:5],
            }
        )
    totals = {
        state: sum(ch.queue.get(state, 0) for ch in health)
        for state in ("pending", "sending", "retry_wait", "failed")
    }
    return {
        "channels": chans,
        "sources": srcs,
        "recent": recent,
        "cells": cells,
        "channel_names": list(config.channels),
        "problems": problems,
        "totals": totals,
        "subscribers": _subscribers(store, config),
        "plain_error": lambda d: plain_error(d.error_kind, d.last_error, d.next_attempt_at, c.fmt),
    }


def _subscribers(store: Store, config: Config) -> dict[str, Any] | None:
    """People subscribed on the public page: how many, by kind and state, and what they
    follow most (never who). None when no channel offers subscriptions."""
    if not any(
        ch.kind == "webpush" or getattr(ch, "subscribers", False) for ch in config.channels.values()
    ):
        return None
    from clarion.subscriptions import registry as subscribers

    return subscribers.counts(store)


def _followers(store: Store, cfg: Any) -> dict[str, Any] | None:
    """For a fediverse account: its handle's followers by state, and failing servers."""
    if cfg.kind != "activitypub":
        return None
    from clarion.fediverse.accounts import list_followers

    found = list_followers(store, cfg.username)
    return {
        "accepted": sum(f.state == "accepted" for f in found),
        "pending": sum(f.state == "pending" for f in found),
        "dropped": sum(f.state == "dropped" for f in found),
        "failing": sum(f.failing_since is not None and f.state == "accepted" for f in found),
    }


def _thread(c: _Ctx, thread_id: int) -> dict[str, Any]:
    with c.store.read() as conn:
        found = desk_reads.story(conn, thread_id)
    if found is None:
        raise HTTPException(404, f"There is no notice {thread_id}.")
    t, versions, rows = found["t"], found["versions"], found["rows"]
    events, authored = found["events"], found["authored"]
    from clarion.subscriptions import registry as subscribers

    by_delivery = subscribers.reach_of(c.store, [d.id for d in rows])
    # A fan-out to subscribers may be in parts: a cell shows the part least done, and the
    # subscribers reached by all of them.
    matrix: dict[tuple[str, int], Any] = {}
    reach: dict[tuple[str, int], dict[str, int]] = {}
    parts: dict[tuple[str, int], int] = {}
    for d in rows:
        key = (d.channel, d.version)
        shown = matrix.get(key)
        if shown is None or (shown.state == "sent" and d.state != "sent"):
            matrix[key] = d
        parts[key] = parts.get(key, 0) + 1
        for state, n in by_delivery.get(d.id, {}).items():
            cell = reach.setdefault(key, {})
            cell[state] = cell.get(state, 0) + n
    chans = list(dict.fromkeys([*c.config.channels, *(d.channel for d in rows)]))
    return {
        "t": t,
        "versions": versions,
        "matrix": matrix,
        "chans": [ch for ch in chans if any(k[0] == ch for k in matrix)],
        "events": events,
        "authored": authored,
        "reach": reach,
        "parts": parts,
        "plain_error": lambda d: plain_error(d.error_kind, d.last_error, d.next_attempt_at, c.fmt),
    }


async def _changes(store: Store, request: Request, poll: float) -> AsyncIterator[bytes]:
    """`event: change` whenever anything the desk shows has changed (a new notice, a delivery
    moving, a draft decided, a channel's state); `event: notice` names each new notice, once.

    Which notices are new is kept apart from the fingerprint: the two are read one after the
    other, so a notice committed in between is listed by the second read but not counted by
    the first, and resuming from the fingerprint's newest id listed it again on the next
    change (CI saw an arrival twice).

    Notices are named in id order up to the highest settled id, as the event stream does
    (`public.settled_after`): on PostgreSQL an ingest still running can commit a lower id
    after a higher one was named, and the list never showed it. While a missing id holds the
    list back (at most `STREAM_GAP_WAIT` seconds), the store is read at every poll, whether
    or not anything else changed."""

    def fingerprint() -> tuple[Any, ...]:
        with store.read() as conn:
            return desk_reads.fingerprint(conn)

    def new_notices(after: int, wait: bool) -> tuple[list[Any], int, bool]:
        with store.read() as conn:
            settled, held = public.settled_after(conn, after, wait=wait)
            return desk_reads.notices_after(conn, after, upto=settled), settled, held

    last = await asyncio.to_thread(fingerprint)
    listed = last[0] or 0  # the newest notice id this stream has named (or found on opening)
    held_since: float | None = None  # since when a missing id holds the list back
    yield b": connected\nretry: 3000\n\n"
    idle = 0.0
    while not await request.is_disconnected():
        await asyncio.sleep(poll)
        current = await asyncio.to_thread(fingerprint)
        if current != last or held_since is not None:
            wait = held_since is None or time.monotonic() - held_since < public.STREAM_GAP_WAIT
            found, settled, held = await asyncio.to_thread(new_notices, listed, wait)
            for n in found:
                data = json.dumps(
                    {"thread": n.thread_id, "headline": n.headline, "status": n.status}
                )
                yield f"event: notice\ndata: {data}\n\n".encode()
            if not held:
                held_since = None
            elif held_since is None or settled != listed:
                held_since = time.monotonic()
            listed = max(listed, settled)
        if current != last:
            last = current
            idle = 0.0
            yield b"event: change\ndata: {}\n\n"
            continue
        idle += poll
        if idle >= 15:
            idle = 0.0
            yield b": keep-alive\n\n"


__all__ = ["BUILTIN", "desk_router", "install_desk", "plain_error"]
