"""The public page: server-rendered HTML, no script. A timeline of every notice, of one source
and of one publisher (the sender a notice names), filterable with a plain form; a page per
notice with every version, a map of its areas, what it affects, and where it was posted; and
`/.well-known/atproto-did`, so the publisher's Bluesky handle can be its own domain.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.templating import Jinja2Templates

from clarion.config import Config
from clarion.model import Severity
from clarion.render.shapes import rings_of
from clarion.store import Store, public
from clarion.web.areamap import area_svg
from clarion.web.i18n import date_formatter, label_for, translations
from clarion.web.outputs import Filter
from clarion.web.query import NoticeFilter, ThreadId, known_source, public_error


@functools.cache
def templates_for(language: str) -> Jinja2Templates:
    """The page's templates in `language` (see clarion.web.i18n)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
    )
    templates = Jinja2Templates(env=env)
    t = translations(language)
    templates.env.install_gettext_translations(t, newstyle=True)  # type: ignore[attr-defined]
    templates.env.globals.update(
        label=label_for(t),
        parse_time=datetime.fromisoformat,
        page_language=language,
        when=date_formatter(language),
    )
    return templates


# The English templates, for pages that are not the public's (the API reference uses them).
TEMPLATES = templates_for("en")
PAGE_SIZE = 50
IN_EFFECT_MAX = 100  # stories listed as in effect, at most (the rest stay under Recent)
Page = Annotated[int, Query(ge=1, le=100_000, description="Page of the timeline")]


# Inputs whose items are news, not events: never "in effect".
NEWS_KINDS = ("feed",)


Words = tuple[ZoneInfo, Callable[[datetime, ZoneInfo], str], Callable[..., str]]


def state_words(s: dict[str, Any], words: Words) -> str:
    """A story's state in plain words: "In effect until …", "Cancelled …", "Resolved …"."""
    tz, when, _ = words
    if s["state"] == "cancelled":
        return _("Cancelled %(when)s", when=when(s["updated"], tz))
    if s["state"] == "ended":
        if s["kind"] == "statuspage":
            return _("Resolved %(when)s", when=when(s["updated"], tz))
        return _("Ended %(when)s", when=when(s["updated"], tz))
    if s["kind"] in NEWS_KINDS:
        return ""
    if s["expired"]:
        return _("Over since %(when)s", when=when(s["until"], tz))
    if s["until"] is not None:
        return _("In effect until %(when)s", when=when(s["until"], tz))
    return _("In effect")


def _words(config: Config) -> Words:
    language = config.clarion.page_language
    t = translations(language)

    def gettext(message: str, **values: Any) -> str:
        text = t.gettext(message)
        return text % values if values else text

    return ZoneInfo(config.clarion.timezone), date_formatter(language), gettext


def _summary(r: Any, now: datetime, words: Words) -> dict[str, Any]:
    data = r.data
    info = (data.get("infos") or [{}])[0]
    over = getattr(r, "over_at", None)  # ends when the event has one, else expires
    expired = bool(over is not None and over <= now)
    out = {
        "id": r.id,
        "headline": r.headline,
        "severity": r.severity,
        "state": r.state,
        "status": r.status,
        "version": r.latest_version,
        # When the publisher sent its newest message, not when Clarion received it (a 2010
        # alert replayed today is not "today").
        "updated": datetime.fromisoformat(data["sent"]) if data.get("sent") else r.updated_at,
        "source": r.source,
        "sender": data.get("sender"),
        "sender_name": info.get("sender_name") or data.get("sender"),
        "areas": "; ".join(a.get("description", "") for a in info.get("areas", [])),
        "entities": [e.get("name") or e.get("id") for e in data.get("entities", [])][:6],
        "expired": expired,
        "until": over,
        "kind": data.get("kind"),
    }
    out["words"] = state_words(out, words)
    out["updated_words"] = words[1](out["updated"], words[0])
    return out


def _favicon() -> bytes:
    """A small icon, drawn once: a red triangle of warning on white (no file to ship)."""
    import io

    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (32, 32), (255, 255, 255, 0))
    ImageDraw.Draw(img).polygon([(16, 2), (30, 29), (2, 29)], fill=(190, 30, 30, 255))
    out = io.BytesIO()
    img.save(out, "ICO", sizes=[(32, 32)])
    return out.getvalue()


def pages_router(store: Store, config: Config) -> APIRouter:
    router = APIRouter(tags=["page"])
    publisher = config.clarion.publisher_name
    from clarion.fediverse.documents import actor_id, handle

    base = (config.clarion.public_url or "").rstrip("/")
    from clarion.channels.activitypub import ActivityPubChannelConfig

    fediverse = [
        {"handle": handle(base, c.username), "url": actor_id(base, c.username)}
        for c in config.channels.values()
        if isinstance(c, ActivityPubChannelConfig) and c.enabled and base
    ]
    words = _words(config)
    tz, _ = words[0], words[2]
    TEMPLATES = templates_for(config.clarion.page_language)
    common = {
        "tz": tz,
        "publisher": publisher,
        "follow": config.clarion.follow,
        "fediverse": fediverse,
        "sources": sorted(config.sources),
        "severities": [s.value for s in Severity if s is not Severity.UNKNOWN],
        "subscribe": any(
            c.enabled and (c.kind == "webpush" or getattr(c, "subscribers", False))
            for c in config.channels.values()
        ),
    }

    def timeline(
        request: Request, flt: NoticeFilter, page: int, title: str, scope: str
    ) -> Response:
        now = datetime.now(UTC)
        with store.read() as conn:
            # What is in effect now comes first (page 1): the most severe, then the newest.
            total, rows, active = public.timeline(
                conn,
                flt.where(),
                offset=(page - 1) * PAGE_SIZE,
                limit=PAGE_SIZE,
                in_effect=IN_EFFECT_MAX if page == 1 else 0,
                now=now,
                news_kinds=NEWS_KINDS,
            )
        in_effect = sorted(
            (_summary(r, now, words) for r in active),
            key=lambda s: (-Severity(s["severity"]).rank, -s["updated"].timestamp()),
        )
        shown = {s["id"] for s in in_effect}
        # One map of every area in effect, named in words for those who cannot see it.
        areas = [a for r in active for a in ((r.data.get("infos") or [{}])[0].get("areas") or [])]
        names = "; ".join(dict.fromkeys(a.get("description", "") for a in areas if a))
        in_effect_map = area_svg(areas, _("Map of the areas in effect now: %(names)s", names=names))
        params = flt.query_params()
        feed_query = urlencode(params, doseq=True)

        def page_url(n: int) -> str:
            return "?" + urlencode({**params, "page": [str(n)]}, doseq=True)

        return TEMPLATES.TemplateResponse(
            request,
            "index.html",
            {
                **common,
                "title": title,
                "scope": scope,
                "in_effect": in_effect,
                "in_effect_map": in_effect_map,
                "items": [_summary(r, now, words) for r in rows if r.id not in shown],
                "filter": flt,
                "feed_query": f"?{feed_query}" if feed_query else "",
                "total": total,
                "newer": page_url(page - 1) if page > 1 else None,
                "older": page_url(page + 1) if page * PAGE_SIZE < total else None,
                "quote": quote,
            },
        )

    @router.get(
        "/", response_class=HTMLResponse, summary="The public page: every notice, newest first"
    )
    def index(request: Request, flt: Filter, page: Page = 1) -> Response:
        return timeline(request, flt, page, _("Notices"), "")

    @router.get(
        "/sources/{name}",
        response_class=HTMLResponse,
        responses={404: {"description": "No such source"}},
        summary="One source's notices",
    )
    def source_page(request: Request, name: str, flt: Filter, page: Page = 1) -> Response:
        if not known_source(store, config, name):
            raise HTTPException(404, f"No source named {name!r}")
        f = NoticeFilter(**{**flt.__dict__, "source": (name,)})
        return timeline(
            request, f, page, _("Notices from %(name)s", name=name), f"/sources/{quote(name)}"
        )

    @router.get(
        "/publishers/{sender:path}",
        response_class=HTMLResponse,
        # A sender with a line break matches no route (found by schemathesis).
        responses={404: {"description": "No such path"}},
        summary="One publisher's notices",
    )
    def publisher_page(request: Request, sender: str, flt: Filter, page: Page = 1) -> Response:
        f = NoticeFilter(**{**flt.__dict__, "publisher": (sender,)})
        with store.read() as conn:
            sample = public.publisher_sample(conn, sender)
        name = sender
        if sample is not None:
            info = (sample.get("infos") or [{}])[0]
            name = info.get("sender_name") or sender
        scope = f"/publishers/{quote(sender, safe='')}"
        return timeline(request, f, page, _("Notices from %(name)s", name=name), scope)

    @router.get(
        "/notices/{thread_id}",
        response_class=HTMLResponse,
        responses={404: {"description": "No such notice"}},
        summary="A notice's page: every version, and where it was posted",
    )
    def thread_page(request: Request, thread_id: ThreadId) -> Response:
        with store.read() as conn:
            thread = public.thread(conn, thread_id)
            if thread is None:
                raise HTTPException(404, "No such notice")
            versions = public.versions(conn, [thread_id], newest_first=True)
            sent = public.where_posted(conn, thread_id)
        by_notice: dict[int, list[Any]] = {}
        for d in sent:
            by_notice.setdefault(d.notice_id, []).append(d)
        now = datetime.now(UTC)
        live = [
            v
            for v in versions
            if v.branch == "live"
            and v.msg_type not in ("cancel", "end")
            and (v.over_at is None or v.over_at > now)
        ]
        shown = []
        for v in versions:
            maps = []
            for info in v.data.get("infos") or []:
                areas = info.get("areas") or []
                label = _(
                    "Map of the area: %(names)s",
                    names="; ".join(a.get("description", "") for a in areas),
                )
                maps.append(area_svg(areas, label))
            shown.append((v, v.data, by_notice.get(v.id, []), maps))
        # Link previews (a notice's address shared on a platform) show its alert card.
        latest_areas = [
            a for info in (versions[0].data.get("infos") or [])[:1] for a in info.get("areas") or []
        ]
        card_url = card_alt = None
        if rings_of(latest_areas):
            site = (config.clarion.public_url or str(request.base_url)).rstrip("/")
            card_url = f"{site}/notices/{thread_id}/card.png"
            card_alt = _(
                "Map of the area: %(names)s",
                names="; ".join(a.get("description", "") for a in latest_areas),
            )
        return TEMPLATES.TemplateResponse(
            request,
            "thread.html",
            {
                **common,
                "card_url": card_url,
                "card_alt": card_alt,
                "thread": thread,
                "versions": shown,
                "live": live,
                "quote": quote,
                "public_error": public_error,
            },
        )

    icon = _favicon()
    from clarion.render.card import CardCache

    cards = CardCache()

    @router.get(
        "/notices/{thread_id}/card.png",
        responses={
            200: {"content": {"image/png": {}}},
            404: {"description": "No such notice, or no shapes to draw"},
        },
        response_class=Response,
        summary="A notice's alert card: its areas drawn with headline, severity and times (PNG)",
    )
    def card(thread_id: ThreadId) -> Response:
        from clarion.model import Notice
        from clarion.render.card import alert_card

        with store.read() as conn:
            data = public.latest_data(conn, thread_id)
        if data is None:
            raise HTTPException(404, "No such notice")
        notice = Notice.model_validate(data)
        key = (thread_id, notice.version, notice.identifier, notice.sent)
        languages = tuple(config.clarion.languages)
        drawn = cards.get(key, lambda: alert_card(notice, languages, tz, publisher))
        if drawn is None:
            raise HTTPException(404, "This notice has no area shapes to draw")
        return Response(
            drawn.data, media_type="image/png", headers={"Cache-Control": "public, max-age=60"}
        )

    @router.get("/favicon.ico", summary="The page's icon", include_in_schema=False)
    def favicon() -> Response:
        return Response(
            icon, media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"}
        )

    @router.get("/robots.txt", response_class=PlainTextResponse, include_in_schema=False)
    def robots(request: Request) -> PlainTextResponse:
        """Everything public may be indexed; the desk and the API's writes are not pages."""
        base = (config.clarion.public_url or str(request.base_url)).rstrip("/")
        return PlainTextResponse(
            "User-agent: *\nDisallow: /desk\nDisallow: /hooks/\nAllow: /\n"
            f"Sitemap: {base}/sitemap.xml\n"
        )

    @router.get("/sitemap.xml", include_in_schema=False)
    def sitemap(request: Request) -> Response:
        """The page, each source's page and each notice's page (sitemaps.org 0.9)."""
        from xml.sax.saxutils import escape

        base = (config.clarion.public_url or str(request.base_url)).rstrip("/")
        with store.read() as conn:
            rows, sources = public.sitemap(conn, 50_000 - 1 - len(config.sources))  # its limit
        entries = [f"<url><loc>{escape(base)}/</loc></url>"]
        entries += [f"<url><loc>{escape(base)}/sources/{escape(s)}</loc></url>" for s in sources]
        entries += [
            f"<url><loc>{escape(base)}/notices/{r.id}</loc>"
            f"<lastmod>{r.updated_at:%Y-%m-%dT%H:%M:%S}Z</lastmod></url>"
            for r in rows
        ]
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
            + "\n".join(entries)
            + "\n</urlset>\n"
        )
        return Response(body, media_type="application/xml")

    @router.get(
        "/.well-known/atproto-did",
        response_class=PlainTextResponse,
        responses={404: {"description": "No DID configured (clarion.atproto_did)"}},
        summary="The publisher's AT Protocol DID (a Bluesky handle on this domain)",
    )
    def atproto_did() -> Response:
        if not config.clarion.atproto_did:
            raise HTTPException(404, "no atproto_did is configured")
        return PlainTextResponse(config.clarion.atproto_did)

    return router
