"""Bluesky (AT Protocol), through the atproto SDK.

- 300 graphemes. Links and hashtags become *facets* with UTF-8 **byte** offsets into the text
  (`facets_for`, pure, property-tested). A mention facet needs the handle's DID: the renderer
  makes no network call, so mentions are resolved when the post is sent
  (`com.atproto.identity.resolveHandle`, cached); a handle that does not resolve stays text.
- A link card (`app.bsky.embed.external`) is built by Clarion from the notice itself (title and
  description). Its thumbnail is the linked page's `og:image` (or `twitter:image`), fetched
  through the SSRF guard, at most 1 MB, and uploaded as a blob; when there is none, or it cannot
  be fetched, the card goes without one.
- Updates are replies with both `root` and `parent` strong refs (uri + cid), kept in receipts.
- The record key is a TID derived from the delivery, so a retry after a crash targets the same
  record. A PDS answers 500 to a create on an existing key, so a retry first asks `getRecord`
  whether the post already exists (PLATFORMS.md, seen against the reference PDS).
- `login(..., fetch_bsky_profile=False)`: the channel depends on the PDS only, not the AppView.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin

import httpx
import regex
from pydantic import field_validator

from clarion.channels.base import (
    ChannelConnector,
    ChannelError,
    Deps,
    ErrorKind,
    Outgoing,
    Profile,
    Receipt,
    RenderContext,
    Rendered,
    lazy_module,
)
from clarion.channels.images import fetch_images
from clarion.channels.parts import part_key, post_parts
from clarion.configtypes import Duration, SecretRef, Threadable, http_url
from clarion.model import Notice
from clarion.net import guarded_client
from clarion.render.counting import URL_RE, count_graphemes
from clarion.render.text import compose_parts

if TYPE_CHECKING:
    import atproto
    from atproto_client import exceptions as atx
    from atproto_client import request as at_request
    from atproto_client.client import session as at_session
else:
    atproto = lazy_module("atproto")
    atx = lazy_module("atproto_client.exceptions")
    at_request = lazy_module("atproto_client.request")
    at_session = lazy_module("atproto_client.client.session")


class BlueskyChannelConfig(Threadable):
    """A Bluesky account (any AT Protocol PDS), with an app password."""

    kind: Literal["bluesky"]
    handle: str
    app_password: SecretRef
    service: str = "https://bsky.social"
    images: bool = True  # attach the alert's images (CAP resources), with alt text
    # Attach the alert card first: the areas' map, headline, severity and times, drawn by
    # Clarion (docs/subscriptions.md), for alerts with shapes. Needs `images`.
    alert_card: bool = False
    card_thumbnail: bool = True  # the link card's image: the linked page's og:image
    timeout: Duration = 20.0

    _check_url = field_validator("service")(http_url)


LIMIT = 300
MAX_PAGE_BYTES = 1_000_000  # read no more of a linked page looking for its og:image
MAX_THUMB_BYTES = 1_000_000  # the lexicon's maxSize for an external embed's thumb
log = logging.getLogger(__name__)
COLLECTION = "app.bsky.feed.post"
TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
TAG_RE = regex.compile(r"(?<![\w#])#(\p{L}[\p{L}\p{N}_]{0,63})")
# An atproto handle (domain syntax: labels of letters, digits and inner hyphens; a letter-led
# last label), after an @ that does not follow a word character (so not an e-mail address).
MENTION_RE = regex.compile(
    r"(?<![\w@.])@((?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+"
    r"[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(?![\w-]|\.\w)"
)


def tid_for(delivery_id: str, sent: datetime) -> str:
    """A TID (13 base32-sortable characters: 53 bits of microseconds, 10 of clock id) that is
    the same for every attempt of one delivery, and near the notice's own time."""
    digest = int.from_bytes(hashlib.sha256(delivery_id.encode()).digest()[:8], "big")
    micros = int(sent.timestamp() * 1_000_000) + digest % 1_000_000
    value = ((micros & ((1 << 53) - 1)) << 10) | (digest >> 20 & 0x3FF)
    return "".join(TID_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(13)))


def _byte_index(text: str, start: int, end: int) -> dict[str, int]:
    b_start = len(text[:start].encode("utf-8"))
    return {"byteStart": b_start, "byteEnd": b_start + len(text[start:end].encode("utf-8"))}


def facets_for(
    text: str, resolve: Callable[[str], str | None] | None = None
) -> list[dict[str, Any]]:
    """Link and hashtag facets, with UTF-8 byte offsets into `text`; mention facets too when
    `resolve` (handle → DID, or None when it does not resolve) is given."""
    facets: list[dict[str, Any]] = []
    for m in URL_RE.finditer(text):
        facets.append(
            {
                "index": _byte_index(text, m.start(), m.end()),
                "features": [{"$type": "app.bsky.richtext.facet#link", "uri": m.group()}],
            }
        )
    links = [(m.start(), m.end()) for m in URL_RE.finditer(text)]
    for m in TAG_RE.finditer(text):
        if any(a <= m.start() < b for a, b in links):
            continue  # a "#fragment" inside a URL is not a hashtag
        facets.append(
            {
                "index": _byte_index(text, m.start(), m.end()),
                "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": m.group(1)}],
            }
        )
    for m in MENTION_RE.finditer(text):
        if resolve is None or any(a <= m.start() < b for a, b in links):
            continue  # no resolver (rendering), or an @ inside a URL
        did = resolve(m.group(1).lower())
        if did:
            facets.append(
                {
                    "index": _byte_index(text, m.start(), m.end()),
                    "features": [{"$type": "app.bsky.richtext.facet#mention", "did": did}],
                }
            )
    return sorted(facets, key=lambda f: f["index"]["byteStart"])


class BlueskyChannel:
    kind = "bluesky"
    # 5,000 points an hour, a create costs 3 (PLATFORMS.md).
    profile = Profile(
        limit=LIMIT,
        counting="graphemes",
        threads=True,
        delete=True,
        idempotency=True,
        rate_limit=(1666, 3600.0),
        images=True,
    )

    def __init__(
        self,
        name: str,
        handle: str,
        app_password: str,
        *,
        service: str = "https://bsky.social",
        timeout: float = 20.0,
        languages: tuple[str, ...] = (),
        images: bool = True,
        fetch: httpx.Client | None = None,
        card: Any = None,
        thread_parts: int = 1,
        card_thumbnail: bool = True,
    ) -> None:
        self.name = name
        self.thread_parts = thread_parts
        self.handle = handle
        self._password = app_password
        self.languages = languages
        self.client = atproto.Client(
            base_url=service.rstrip("/"), request=at_request.Request(timeout=timeout)
        )
        self._did: str | None = None
        self._dids: dict[str, str] = {}  # handle → DID, for mention facets
        # Images come from URIs the publisher put in the alert (an SSRF guard: issue 7).
        self.images = images
        self.card_thumbnail = card_thumbnail
        self._card = card  # (time zone, publisher) for the alert card, or None
        self._fetch = (
            (fetch or guarded_client(timeout=timeout, follow_redirects=True, max_redirects=5))
            if images or card_thumbnail
            else None
        )

    def close(self) -> None:
        self.client.request._client.close()
        if self._fetch is not None:
            self._fetch.close()

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        parts = compose_parts(
            notice,
            limit=LIMIT,
            count=count_graphemes,
            languages=self.languages or ctx.languages,
            permalink=ctx.permalink,
            template=ctx.template,
            max_parts=self.thread_parts,
        )
        r = parts[0]
        info = notice.info(self.languages or ctx.languages)
        link = notice.link or ctx.permalink
        card = None
        if link:
            desc = (info.description or info.instruction or "") if info else ""
            card = {
                "uri": link,
                "title": r.text.split("\n", 1)[0][:300],
                "description": " ".join(desc.split())[:1000],
            }
        lang = (r.language or "en").split("-")[0].lower()
        payload: dict[str, Any] = {
            "text": r.text,
            "facets": facets_for(r.text),
            "langs": [lang],
            "card": card,
            "count": r.count,
            "limit": LIMIT,
        }
        if len(parts) > 1:
            payload["thread"] = [
                {"text": p.text, "count": p.count, "facets": facets_for(p.text)} for p in parts[1:]
            ]
        return Rendered.from_row(payload)

    # --- I/O ------------------------------------------------------------------------------

    def _login(self) -> str:
        if self._did is None:
            self._call(
                lambda: self.client.login(self.handle, self._password, fetch_bsky_profile=False)
            )
            self._did = at_session.Session.decode(self.client.export_session_string()).did
        return self._did

    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except atx.UnauthorizedError as exc:
            self._did = None
            raise ChannelError(ErrorKind.AUTH, f"Bluesky refused the credentials: {exc}") from None
        except atx.RateLimitExceededError as exc:
            raise ChannelError(
                ErrorKind.RATE_LIMITED, f"Bluesky rate limit: {exc}", _reset_in(exc)
            ) from None
        except atx.BadRequestError as exc:
            raise ChannelError(ErrorKind.PERMANENT, f"Bluesky rejected the post: {exc}") from None
        except (atx.InvokeTimeoutError, atx.NetworkError) as exc:
            raise ChannelError(ErrorKind.RETRYABLE, f"Bluesky unreachable: {exc!r}") from None
        except atx.RequestErrorBase as exc:
            raise ChannelError(ErrorKind.RETRYABLE, f"Bluesky server error: {exc}") from None
        except atx.AtProtocolError as exc:  # garbage the SDK could not read
            raise ChannelError(ErrorKind.RETRYABLE, f"Bluesky answered garbage: {exc!r}") from None

    def _resolve_handle(self, handle: str) -> str | None:
        if handle not in self._dids:
            try:
                res = self.client.com.atproto.identity.resolve_handle(
                    atproto.models.ComAtprotoIdentityResolveHandle.Params(handle=handle)
                )
                self._dids[handle] = str(res.did)
            except atx.AtProtocolError as exc:
                log.info("%s: @%s left as text: it does not resolve (%s)", self.name, handle, exc)
                return None
        return self._dids[handle]

    def _existing(self, did: str, rkey: str) -> Any:
        try:
            return self.client.com.atproto.repo.get_record(
                atproto.models.ComAtprotoRepoGetRecord.Params(
                    repo=did, collection=COLLECTION, rkey=rkey
                )
            )
        except atx.BadRequestError:
            return None  # RecordNotFound
        except atx.AtProtocolError:
            return None  # cannot tell: the create below decides (a duplicate key answers 500)

    def send(self, out: Outgoing) -> Receipt:
        p = out.payload
        facets = [p.get("facets"), *(t.get("facets") for t in p.get("thread") or [])]

        def post_one(i: int, text: str, parent: Receipt | None, root: Receipt | None) -> Receipt:
            return self._post(out, i, text, facets[i], parent, root)

        return post_parts(out, post_one)

    def _post(
        self,
        out: Outgoing,
        i: int,
        text: str,
        facets: Any,
        parent: Receipt | None,
        root: Receipt | None,
    ) -> Receipt:
        did = self._login()
        rkey = tid_for(part_key(out.id, i), out.notice.sent)
        if out.attempt > 1 and (found := self._existing(did, rkey)) is not None:
            return self._receipt(str(found.uri), str(found.cid), rkey)
        p = out.payload
        record: dict[str, Any] = {
            "$type": COLLECTION,
            "text": text,
            "langs": p["langs"],
            "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        if MENTION_RE.search(text):  # mention facets need DIDs: resolved now, at send time
            facets = facets_for(text, self._resolve_handle)
        if facets:
            record["facets"] = facets
        images = self._images(out.notice) if parent is None else []
        if parent is not None:
            top = root or parent
            record["reply"] = {
                "root": {"uri": top.post_id, "cid": top.extra.get("cid")},
                "parent": {"uri": parent.post_id, "cid": parent.extra.get("cid")},
            }
        if images:  # a post has one embed: the images say more than a card to our own page
            record["embed"] = {"$type": "app.bsky.embed.images", "images": images}
        elif p.get("card") and "reply" not in record:
            external = dict(p["card"])
            if (thumb := self._thumbnail(str(external["uri"]))) is not None:
                external["thumb"] = thumb
            record["embed"] = {"$type": "app.bsky.embed.external", "external": external}
        data = atproto.models.ComAtprotoRepoCreateRecord.Data(
            repo=did, collection=COLLECTION, rkey=rkey, record=record, validate=True
        )
        try:
            res = self._call(lambda: self.client.com.atproto.repo.create_record(data))
        except ChannelError as exc:
            if exc.kind is ErrorKind.AUTH and self._did is None:  # an expired session: once more
                did = self._login()
                res = self._call(lambda: self.client.com.atproto.repo.create_record(data))
            else:
                raise
        return self._receipt(str(res.uri), str(res.cid), rkey)

    def _thumbnail(self, page: str) -> dict[str, Any] | None:
        """The link card's thumbnail: the page's og:image, uploaded as a blob, or None."""
        if self._fetch is None or not self.card_thumbnail:
            return None
        try:
            html, _ = _read(self._fetch, page, MAX_PAGE_BYTES, ("text/html", "application/xhtml"))
            image_url = og_image(html, page)
            if image_url is None:
                return None
            data, mime = _read(self._fetch, image_url, MAX_THUMB_BYTES, ("image/",))
        except (httpx.HTTPError, ValueError) as exc:
            log.info("%s: no link-card thumbnail for %s: %s", self.name, page, exc)
            return None
        try:
            blob = self._upload(data, mime)
        except ChannelError as exc:
            log.warning("%s: the thumbnail upload failed, card without it: %s", self.name, exc)
            return None
        return dict(blob.model_dump(by_alias=True, exclude_none=True))

    def _upload(self, data: bytes, mime: str) -> Any:
        """uploadBlob with the image's own type (the SDK would send */* and leave the PDS to
        guess)."""
        return self._call(
            lambda: self.client.com.atproto.repo.upload_blob(data, headers={"Content-Type": mime})
        ).blob

    def _images(self, notice: Notice) -> list[dict[str, Any]]:
        """Upload the notice's images as blobs, their descriptions as alt text."""
        if self._fetch is None or not self.images:
            return []
        out: list[dict[str, Any]] = []
        for image in fetch_images(
            self._fetch,
            notice,
            self.languages,
            limit=4,
            max_bytes=1_000_000,
            who=self.name,
            card=self._card,
        ):
            try:
                blob = self._upload(image.data, image.mime_type)
            except ChannelError as exc:
                log.warning("%s: an image upload failed, posting without it: %s", self.name, exc)
                continue
            out.append(
                {
                    "alt": image.alt[:2000],
                    "image": blob.model_dump(by_alias=True, exclude_none=True),
                }
            )
        return out

    def _receipt(self, uri: str, cid: str, rkey: str) -> Receipt:
        return Receipt(
            post_id=uri,
            url=f"https://bsky.app/profile/{self.handle}/post/{rkey}",
            extra={"cid": cid},
        )


def og_image(html: bytes, base: str) -> str | None:
    """The page's preview image (`og:image`, else `twitter:image`), as an absolute URL."""
    import lxml.html

    try:
        doc = lxml.html.document_fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return None
    for key in ("og:image:secure_url", "og:image", "og:image:url", "twitter:image"):
        for meta in doc.iter("meta"):
            if (meta.get("property") or meta.get("name") or "").strip().lower() == key:
                content = (meta.get("content") or "").strip()
                if content:
                    url = urljoin(base, content)
                    return url if url.startswith(("https://", "http://")) else None
    return None


def _read(http: httpx.Client, url: str, limit: int, types: tuple[str, ...]) -> tuple[bytes, str]:
    """GET `url`, refusing a wrong content type or a body over `limit` bytes (read no further)."""
    from clarion.decoding import ACCEPT_ENCODING
    from clarion.net import TooLarge, read_limited

    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not an address that can be fetched: {exc}") from None
    with http.stream("GET", url, headers={"Accept-Encoding": ACCEPT_ENCODING}) as resp:
        if resp.status_code != 200:
            raise ValueError(f"HTTP {resp.status_code}")
        ctype = resp.headers.get("content-type", "").lower()
        if not ctype.startswith(types):
            raise ValueError(f"content type {ctype or 'none'}")
        deadline = time.monotonic() + 30  # the whole answer, however slowly it drips
        try:  # decoded as it arrives (DecodingError is a ValueError): counted as inflated
            body = read_limited(resp, max_bytes=limit, deadline=deadline, what=url)
        except TooLarge:
            raise ValueError(f"over {limit:,} bytes") from None
        except httpx.ReadTimeout:
            raise ValueError("took longer than 30 s") from None
    return body, ctype.split(";", 1)[0].strip()


def _reset_in(exc: atx.RequestErrorBase) -> float | None:
    headers = exc.response.headers if exc.response is not None else {}
    reset = {k.lower(): v for k, v in headers.items()}.get("ratelimit-reset")
    try:
        # The reset is a whole epoch second: wait until it has begun, never a moment less.
        return max(1.0, float(math.ceil(float(reset) - time.time()))) if reset else None
    except ValueError:
        return None


def _build(cfg: BlueskyChannelConfig, deps: Deps) -> BlueskyChannel:
    return BlueskyChannel(
        deps.name,
        cfg.handle,
        deps.secret("app_password", cfg.app_password),
        service=cfg.service,
        timeout=cfg.timeout,
        languages=deps.languages,
        images=cfg.images,
        card=deps.card() if cfg.alert_card else None,
        thread_parts=cfg.thread_parts,
        card_thumbnail=cfg.card_thumbnail,
        fetch=deps.fetcher(cfg.timeout, cfg.images or cfg.card_thumbnail),
    )


CONNECTOR = ChannelConnector(
    kind="bluesky",
    config=BlueskyChannelConfig,
    profile=BlueskyChannel.profile,
    build=_build,
    offline=lambda parts: BlueskyChannel("bluesky", "handle.invalid", "-", thread_parts=parts),
)
