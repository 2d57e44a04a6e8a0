"""Clarion as an ActivityPub server, for each `activitypub` channel's account: WebFinger, the
actor, its outbox, followers and notes, NodeInfo, and the inbox (shared and per account).

The inbox takes `Follow` (accepted at once with a signed `Accept`, or held for an operator when
the account says `manually_approves_followers`), `Undo(Follow)`, and `Delete` of an account.
Every request must carry a valid HTTP Signature by the actor it speaks for: the signer's key is
fetched from its server (through the SSRF guard), cached, and fetched again once if a cached
key no longer verifies (keys are rotated). Anything else is refused with 401 and the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from clarion import __version__, safejson
from clarion.channels.activitypub import ActivityPubChannelConfig
from clarion.config import Config
from clarion.decoding import DecodingError
from clarion.fediverse import accounts
from clarion.fediverse.client import Signer
from clarion.fediverse.documents import (
    AP,
    JRD,
    actor,
    actor_id,
    collection,
    nodeinfo,
    nodeinfo_links,
    webfinger,
)
from clarion.fediverse.signatures import SignatureError, verify
from clarion.net import BadAddress, TooLarge
from clarion.store import Store
from clarion.store import public as reads

log = logging.getLogger(__name__)
AP_TYPES = ("application/activity+json", "application/ld+json")


def _json(doc: Any, media_type: str = AP, status: int = 200) -> Response:
    return Response(
        json.dumps(doc, ensure_ascii=False),
        status_code=status,
        media_type=media_type,
        headers={"Cache-Control": "max-age=60"},
    )


def fediverse_router(store: Store, config: Config) -> APIRouter | None:
    accts = {
        c.username: (name, c)
        for name, c in config.channels.items()
        if isinstance(c, ActivityPubChannelConfig) and c.enabled
    }
    if not accts or not config.clarion.public_url:
        return None
    base = config.clarion.public_url.rstrip("/")
    host = base.split("://", 1)[1].split("/", 1)[0]
    router = APIRouter(include_in_schema=False)
    networks = config.clarion.networks()

    def account(username: str) -> tuple[str, ActivityPubChannelConfig]:
        if username not in accts:
            raise HTTPException(404, f"no account {username!r} here")
        return accts[username]

    def now() -> datetime:
        return datetime.now(UTC)

    @router.get("/.well-known/webfinger")
    def wf(resource: str) -> Response:
        name = None
        if resource.startswith("acct:"):
            user, _, domain = resource.removeprefix("acct:").lstrip("@").partition("@")
            if domain.lower() == host.lower():
                name = user.lower()
        elif resource.startswith(base + "/ap/"):
            name = resource.removeprefix(base + "/ap/")
        if name not in accts:
            raise HTTPException(404, f"no account {resource!r} here")
        return _json(webfinger(base, name), JRD)

    @router.get("/.well-known/nodeinfo")
    def ni_links() -> Response:
        return _json(nodeinfo_links(base), "application/json")

    @router.get("/nodeinfo/2.1")
    def ni() -> Response:
        with store.read() as conn:
            posts = reads.notice_count(conn)
        doc = nodeinfo(__version__, len(accts), int(posts), config.clarion.publisher_name)
        return _json(
            doc,
            'application/json; profile="http://nodeinfo.diaspora.software/ns/schema/2.1#"',
        )

    def actor_doc(username: str) -> dict[str, Any]:
        _, cfg = account(username)
        _, public = accounts.keypair(store, username, now())
        created = accounts.key_created_at(store, username)
        return actor(
            base,
            username,
            name=cfg.display_name or config.clarion.publisher_name,
            summary=cfg.summary,
            public_key=public,
            icon=cfg.icon,
            links=[(f.label, f.url) for f in config.clarion.follow],
            manually_approves=cfg.manually_approves_followers,
            published=created,
        )

    @router.get("/ap/{username}")
    def get_actor(request: Request, username: str) -> Response:
        account(username)
        wants = request.headers.get("accept", "")
        if "text/html" in wants and not any(t in wants for t in AP_TYPES):
            return RedirectResponse(base + "/", status_code=303)  # a person, in a browser
        return _json(actor_doc(username))

    def sent_notes(channel: str, limit: int) -> list[Any]:
        with store.read() as conn:
            return reads.sent_on(conn, channel, limit)

    @router.get("/ap/{username}/outbox")
    def outbox(username: str) -> Response:
        channel, _ = account(username)
        me = actor_id(base, username)
        items = []
        for r in sent_notes(channel, 20):
            if r.payload.get("activity") != "Create":
                continue
            obj = r.payload["object"]
            items.append(
                {
                    "id": (r.receipt or {}).get("extra", {}).get("activity") or obj["id"] + "#c",
                    "type": "Create",
                    "actor": me,
                    "published": obj["published"],
                    "to": obj["to"],
                    "cc": obj["cc"],
                    "object": obj,
                }
            )
        with store.read() as conn:
            # One Note (one Create) per story: its updates and cancel edit that Note, they are
            # not items of their own.
            total = reads.stories_sent_on(conn, channel)
        return _json(collection(f"{me}/outbox", int(total), items))

    @router.get("/ap/{username}/followers")
    def followers(username: str) -> Response:
        account(username)
        total = len(accounts.list_followers(store, username, "accepted"))
        return _json(collection(f"{actor_id(base, username)}/followers", total))

    @router.get("/ap/{username}/following")
    def following(username: str) -> Response:
        account(username)
        return _json(collection(f"{actor_id(base, username)}/following", 0, []))

    @router.get("/ap/{username}/notes/{thread}")
    def get_note(username: str, thread: int) -> Response:
        channel, _ = account(username)
        with store.read() as conn:
            payload = reads.last_sent_payload(conn, channel, thread)
        if payload is None:
            raise HTTPException(404, "no such note")
        if payload.get("activity") == "Delete":
            return _json({"id": payload["object"]["id"], "type": "Tombstone"}, status=410)
        return _json({"@context": "https://www.w3.org/ns/activitystreams", **payload["object"]})

    # --- Inbox ---------------------------------------------------------------------------------

    signer = Signer(store, base, networks)

    def fetch(url: str, username: str) -> dict[str, Any]:
        """An ActivityPub document, fetched signed; SignatureError when it cannot be had."""
        try:
            resp = signer.get(url, username)
        except TooLarge as exc:
            raise SignatureError(f"the signer's document is too large: {exc}") from None
        except (DecodingError, BadAddress) as exc:
            raise SignatureError(f"the signer's document: {exc}") from None
        if resp.status_code == 410:
            raise SignatureError("the signer's account is gone (410)")
        if not resp.is_success:
            raise SignatureError(f"the signer's key could not be fetched (HTTP {resp.status_code})")
        try:
            doc = resp.json()
        except (ValueError, RecursionError):
            raise SignatureError("the signer's key document is not JSON") from None
        if not isinstance(doc, dict):
            raise SignatureError("the signer's key document is not an object")
        return doc

    def remote_key(key_id: str, username: str, refresh: bool) -> tuple[str, str]:
        """(public PEM, owner actor) of `key_id`: from the cache, else from its server."""
        if not refresh:
            cached = accounts.cached_key(store, key_id)
            if cached is not None:
                return cached
        fetched_from = key_id.split("#", 1)[0]
        doc = fetch(fetched_from, username)
        pem = _key_in(doc, key_id)
        if pem is None:
            raise SignatureError(f"no key {key_id!r} in the document it points to")
        key = next(k for k in _keys(doc) if k.get("id") == key_id)
        owner = str(key.get("owner") or doc.get("id"))
        # The key must be the actor's own: a key document anyone can serve may *name* any
        # actor as its owner, and a JSON file anyone uploaded to the actor's own host may say
        # it *is* that actor. So the key and its actor are on one host, and unless the
        # document fetched is the owner's, at the owner's own URL, the owner is fetched from
        # that URL and must list this very key.
        if urlsplit(owner).netloc.lower() != urlsplit(key_id).netloc.lower():
            raise SignatureError(f"the key {key_id!r} is not on its owner's host ({owner})")
        if not (doc.get("id") == owner == fetched_from):
            actor_doc = fetch(owner, username)
            if actor_doc.get("id") != owner or _key_in(actor_doc, key_id) != pem:
                raise SignatureError(f"the actor {owner} does not list the key {key_id!r}")
        accounts.cache_key(store, key_id, owner, pem, now())
        return pem, owner

    def check(request: Request, body: bytes, username: str) -> str:
        """The actor that signed the request (verified), or SignatureError."""
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        from clarion.fediverse.signatures import key_id_of

        try:
            key_id = key_id_of(request.headers)
        except (SignatureError, KeyError):
            raise SignatureError("the request is not signed (no Signature header)") from None
        owners: dict[str, str] = {}

        def public(kid: str, refresh: bool) -> str:
            pem, owners[kid] = remote_key(kid, username, refresh)
            return pem

        try:
            verify(request.method, target, request.headers, body, lambda k: public(k, False))
        except SignatureError as first:
            if "does not match" not in str(first):
                raise
            # The key may have been rotated since we cached it: fetch it once more.
            verify(request.method, target, request.headers, body, lambda k: public(k, True))
        return owners[key_id]

    def send_accept(username: str, follower: str, follow_id: str | None, inbox: str) -> None:
        try:
            signer.accept(username, follower, follow_id, inbox)
        except httpx.HTTPError as exc:
            log.warning("Accept to %s failed: %s", inbox, exc)

    async def handle(request: Request, username: str | None, tasks: BackgroundTasks) -> Response:
        body = await request.body()
        try:
            doc = safejson.loads(body)
        except safejson.JSONRefused as exc:
            raise HTTPException(400, f"the body is not acceptable JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("actor"), str):
            raise HTTPException(400, "not an activity (no actor)")
        kind = doc.get("type")
        obj = doc.get("object")
        if obj is not None and not isinstance(obj, str | dict):
            raise HTTPException(400, "the activity's object is neither a link nor an object")
        target = (
            obj
            if isinstance(obj, str)
            else obj.get("object")
            if kind == "Undo" and isinstance(obj, dict)
            else None
        )
        # Whose key signs our fetches: the account addressed, or the first one.
        me = username or _addressed(base, accts, target) or next(iter(accts))
        try:
            signer = await asyncio.to_thread(check, request, body, me)
        except SignatureError as exc:
            return JSONResponse({"detail": f"signature refused: {exc}"}, status_code=401)
        except httpx.HTTPError as exc:
            return JSONResponse(
                {"detail": f"the signer's key could not be fetched: {exc}"}, status_code=401
            )
        if signer != doc["actor"]:
            return JSONResponse(
                {"detail": "signed by another actor than the one it speaks for"}, status_code=401
            )
        if kind == "Follow" and isinstance(obj, str):
            followed = _addressed(base, accts, obj)
            if followed is None:
                raise HTTPException(404, "no such account to follow here")
            remote = await asyncio.to_thread(fetch, doc["actor"], followed)
            inbox = remote.get("inbox")
            if not isinstance(inbox, str):
                raise HTTPException(400, "the follower has no inbox")
            shared = (remote.get("endpoints") or {}).get("sharedInbox")
            held = accts[followed][1].manually_approves_followers
            accounts.add_follower(
                store,
                followed,
                doc["actor"],
                inbox,
                shared if isinstance(shared, str) else None,
                "pending" if held else "accepted",
                now(),
                follow_id=doc.get("id") if isinstance(doc.get("id"), str) else None,
            )
            if not held:
                tasks.add_task(send_accept, followed, doc["actor"], doc.get("id"), inbox)
        elif kind == "Undo" and isinstance(obj, dict) and obj.get("type") == "Follow":
            followed = _addressed(base, accts, obj.get("object"))
            if followed is not None:
                accounts.remove_follower(store, followed, doc["actor"])
        elif kind == "Delete" and (
            obj == doc["actor"] or (isinstance(obj, dict) and obj.get("id") == doc["actor"])
        ):
            accounts.remove_actor(store, doc["actor"])
        return Response(status_code=202)

    @router.post("/ap/inbox")
    async def shared_inbox(request: Request, tasks: BackgroundTasks) -> Response:
        return await handle(request, None, tasks)

    @router.post("/ap/{username}/inbox")
    async def inbox(request: Request, username: str, tasks: BackgroundTasks) -> Response:
        account(username)
        return await handle(request, username, tasks)

    return router


def _keys(doc: dict[str, Any]) -> list[dict[str, Any]]:
    key = doc.get("publicKey")
    return [k for k in (key if isinstance(key, list) else [key]) if isinstance(k, dict)]


def _key_in(doc: dict[str, Any], key_id: str) -> str | None:
    """The PEM of `key_id` as `doc` lists it, if it does."""
    for k in _keys(doc):
        if k.get("id") == key_id and isinstance(k.get("publicKeyPem"), str):
            return str(k["publicKeyPem"])
    return None


def _addressed(base: str, accts: dict[str, Any], target: Any) -> str | None:
    if isinstance(target, str) and target.startswith(base + "/ap/"):
        name = target.removeprefix(base + "/ap/")
        return name if name in accts else None
    return None
