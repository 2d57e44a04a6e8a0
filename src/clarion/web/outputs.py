"""The publisher's own outputs over HTTP: feeds (Atom, RSS, JSON Feed, a CAP index), per source
and filtered, and each notice as a CAP 1.2 document.

Feeds answer conditional requests: the ETag is a digest of what the feed would hold (its
format, its filter, the newest matching notice and how many match), checked before anything is
rendered, and `Last-Modified` / `If-Modified-Since` work as well; `Cache-Control` lets a CDN in
front hold a feed for a minute. When `clarion.websub_hub` is set every feed names the hub (in
the document and in `Link` headers).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from clarion.config import Config
from clarion.model import Notice, Severity, Status
from clarion.store import Store, public
from clarion.web.capdoc import CAP_CONTENT_TYPE, cap_document, cap_identity, serve_original
from clarion.web.feeds import FORMATS, FeedMeta, item_from_row
from clarion.web.query import NoticeFilter, ThreadId, Version, known_source

FEED_SIZE = 50


def _doc(media_type: str) -> dict[int | str, dict[str, Any]]:
    """What a feed or CAP route answers, for the OpenAPI document."""
    return {
        200: {"content": {media_type: {}}, "description": "The document"},
        304: {"description": "Not modified since the ETag or date the client holds"},
        404: {"description": "No such source or notice"},
    }


ATOM_DOC = _doc("application/atom+xml")
RSS_DOC = _doc("application/rss+xml")
JSON_DOC = _doc("application/feed+json")
CAP_DOC = _doc("application/cap+xml")
CACHE_CONTROL = "public, max-age=60, stale-while-revalidate=60"


def base_url(config: Config, request: Request) -> str:
    if config.clarion.public_url:
        return config.clarion.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def notice_filter(
    source: Annotated[list[str] | None, Query(description="Source name(s).")] = None,
    publisher: Annotated[
        list[str] | None, Query(description="The sender, as the notice names it.")
    ] = None,
    severity: Annotated[Severity | None, Query(description="At least this severity.")] = None,
    status: Annotated[list[Status] | None, Query(description="CAP status(es).")] = None,
    category: Annotated[
        list[str] | None, Query(description="CAP category, e.g. Met, Transport.")
    ] = None,
    area: Annotated[
        list[str] | None, Query(description="A geocode: MTZ014, or UGC=MTZ014.")
    ] = None,
    route: Annotated[list[str] | None, Query(description="A transit route id or name.")] = None,
    entity: Annotated[
        list[str] | None, Query(description="An affected entity: id, or kind:id.")
    ] = None,
    lang: Annotated[list[str] | None, Query(description="Language: en, or en-US.")] = None,
    place: Annotated[
        str | None,
        Query(
            max_length=200,
            description="A place, line or service by name (its words, any case or accents): "
            "Lewis and Clark, Glen Park, Git Operations.",
        ),
    ] = None,
) -> NoticeFilter:
    try:
        return NoticeFilter.build(
            source=source,
            publisher=publisher,
            severity=severity.value if severity else None,
            status=[s.value for s in status or []],
            category=category,
            area=area,
            route=route,
            entity=entity,
            lang=lang,
            place=place,
        )
    except ValueError as exc:  # pragma: no cover - the enums are checked by FastAPI first
        raise HTTPException(422, str(exc)) from None


Filter = Annotated[NoticeFilter, Depends(notice_filter)]


class BodyCache:
    """A small thread-safe LRU of response bodies."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.items: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        with self.lock:
            body = self.items.get(key)
            if body is not None:
                self.items.move_to_end(key)
            return body

    def put(self, key: str, body: bytes) -> None:
        with self.lock:
            self.items[key] = body
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {t.strip().removeprefix("W/") for t in header.split(",")}


def _not_modified(request: Request, etag: str, last: datetime | None) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        return etag in _etags(inm) or inm.strip() == "*"
    ims = request.headers.get("if-modified-since")
    if ims and last is not None:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        return last.replace(microsecond=0) <= since
    return False


def outputs_router(store: Store, config: Config) -> APIRouter:
    router = APIRouter()
    publisher = config.clarion.publisher_name
    # Rendered feeds by ETag: the ETag names exactly what a feed holds (format, filter, newest
    # matching notice, how many, base URL), so a cached body is never stale, and a feed is
    # rendered once per change instead of once per reader.
    rendered = BodyCache(128)
    hub = config.clarion.websub_hub

    def feed(request: Request, fmt: str, flt: NoticeFilter, path: str, title: str) -> Response:
        render, media_type = FORMATS[fmt]
        where = flt.where()
        with store.read() as conn:
            newest, total, last = public.feed_state(conn, where)
            base = base_url(config, request)
            digest = hashlib.sha256(
                f"{fmt}|{flt.key()}|{newest}|{total}|{publisher}|{hub}|{base}".encode()
            ).hexdigest()
            etag = f'"{digest[:32]}"'
            headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
            query = urlencode(flt.query_params(), doseq=True)
            self_url = f"{base}{path}" + (f"?{query}" if query else "")
            if hub:
                headers["Link"] = f'<{hub}>; rel="hub", <{self_url}>; rel="self"'
            if last is not None:
                headers["Last-Modified"] = format_datetime(last, usegmt=True)
            if _not_modified(request, etag, last):
                return Response(status_code=304, headers=headers)
            cached = rendered.get(etag)
            if cached is not None:  # the same feed, already rendered by this process
                return Response(cached, media_type=media_type, headers=headers)
            rows = public.feed_items(conn, where, FEED_SIZE)
        meta = FeedMeta(title=title, base_url=base, self_url=self_url, html_url=f"{base}/", hub=hub)
        body = render(meta, [item_from_row(r, base) for r in rows])
        rendered.put(etag, body)
        return Response(body, media_type=media_type, headers=headers)

    def _source_filter(name: str, flt: NoticeFilter) -> NoticeFilter:
        if not known_source(store, config, name):
            raise HTTPException(404, f"No source named {name!r}")
        return NoticeFilter(**{**flt.__dict__, "source": (name,)})

    # (format, path of the whole feed, path of one source's, documented answer, what it is)
    kinds = [
        ("atom", "/feeds/all.atom", "/feeds/source/{name}.atom", ATOM_DOC, "Atom feed"),
        ("rss", "/feeds/all.rss", "/feeds/source/{name}.rss", RSS_DOC, "RSS 2.0 feed"),
        ("json", "/feeds/all.json", "/feeds/source/{name}.json", JSON_DOC, "JSON Feed 1.1"),
        ("cap", "/feeds/cap.atom", "/feeds/source/{name}/cap.atom", ATOM_DOC, "CAP index"),
    ]

    def endpoints(fmt: str, whole: str, one: str) -> tuple[Any, Any]:
        """The two handlers of one format (a factory: each closes over its own format)."""
        suffix = " (CAP)" if fmt == "cap" else ""

        def all_feed(request: Request, flt: Filter) -> Response:
            return feed(request, fmt, flt, whole, publisher + (": CAP" if suffix else ""))

        def source_feed(request: Request, name: str, flt: Filter) -> Response:
            f = _source_filter(name, flt)
            return feed(request, fmt, f, one.format(name=name), f"{publisher}: {name}{suffix}")

        return all_feed, source_feed

    for fmt, whole, one, doc, what in kinds:
        all_feed, source_feed = endpoints(fmt, whole, one)
        for path, endpoint, summary in (
            (whole, all_feed, f"{what} of every notice"),
            (one, source_feed, f"{what} of one source"),
        ):
            router.add_api_route(
                path,
                endpoint,
                methods=["GET"],
                response_class=Response,
                responses=doc,
                tags=["feeds"],
                summary=summary,
            )

    def cap_response(request: Request, thread_id: int, version: int | None) -> Response:
        with store.read() as conn:
            rows = public.cap_versions(conn, thread_id)
        if version is None and rows:
            version = rows[-1].version
        chosen = [r for r in rows if r.version == version]
        if not chosen:
            raise HTTPException(404, "No such notice")
        row = chosen[0]
        etag = f'"{row.content_hash[:32]}"'
        headers = {
            "ETag": etag,
            "Cache-Control": CACHE_CONTROL,
            "Last-Modified": format_datetime(row.received_at, usegmt=True),
        }
        if _not_modified(request, etag, row.received_at):
            return Response(status_code=304, headers=headers)
        notice = Notice.model_validate({**row.data, "original": row.original})
        if serve_original(notice):
            body = bytes(notice.original or b"")
        else:
            earlier = [
                cap_identity(Notice.model_validate(r.data), r.version)
                for r in rows
                if r.version < row.version
            ]
            body = cap_document(notice, row.version, earlier)
        return Response(body, media_type=CAP_CONTENT_TYPE, headers=headers)

    @router.get(
        "/notices/{thread_id:int}.cap",
        response_class=Response,
        responses=CAP_DOC,
        tags=["cap"],
        summary="Latest version, as CAP",
    )
    def notice_cap(request: Request, thread_id: ThreadId) -> Response:
        return cap_response(request, thread_id, None)

    @router.get(
        "/notices/{thread_id:int}/v{version:int}.cap",
        response_class=Response,
        responses=CAP_DOC,
        tags=["cap"],
        summary="One version, as CAP",
    )
    def notice_version_cap(request: Request, thread_id: ThreadId, version: Version) -> Response:
        return cap_response(request, thread_id, version)

    return router
