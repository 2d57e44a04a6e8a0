"""Every document Clarion serves or sends as an ActivityPub server. Pure functions of their
inputs (golden-tested): WebFinger, the actor (a `Service`), collections, NodeInfo, the Note a
notice becomes, and the activities that carry it."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from clarion.model import MsgType, Notice, Status
from clarion.render.text import marked_headline

AS = "https://www.w3.org/ns/activitystreams"
PUBLIC = f"{AS}#Public"
CONTEXT: list[Any] = [
    AS,
    "https://w3id.org/security/v1",
    {
        "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
        "schema": "http://schema.org#",
        "PropertyValue": "schema:PropertyValue",
        "value": "schema:value",
        "Hashtag": "as:Hashtag",
        "sensitive": "as:sensitive",
    },
]
JRD = "application/jrd+json"
AP = "application/activity+json"


def actor_id(base: str, username: str) -> str:
    return f"{base}/ap/{username}"


def handle(base: str, username: str) -> str:
    """`@username@host`, as people type it to follow."""
    host = base.split("://", 1)[1].split("/", 1)[0]
    return f"@{username}@{host}"


def webfinger(base: str, username: str) -> dict[str, Any]:
    host = base.split("://", 1)[1].split("/", 1)[0]
    return {
        "subject": f"acct:{username}@{host}",
        "aliases": [actor_id(base, username)],
        "links": [
            {"rel": "self", "type": AP, "href": actor_id(base, username)},
            {
                "rel": "http://webfinger.net/rel/profile-page",
                "type": "text/html",
                "href": base + "/",
            },
        ],
    }


def actor(
    base: str,
    username: str,
    *,
    name: str,
    summary: str,
    public_key: str,
    icon: str | None,
    links: list[tuple[str, str]],
    manually_approves: bool,
    published: datetime,
) -> dict[str, Any]:
    me = actor_id(base, username)
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "id": me,
        "type": "Service",  # an automated account (Mastodon shows it as one)
        "preferredUsername": username,
        "name": name,
        "summary": f"<p>{html.escape(summary)}</p>" if summary else "",
        "url": base + "/",
        "inbox": f"{me}/inbox",
        "outbox": f"{me}/outbox",
        "followers": f"{me}/followers",
        "following": f"{me}/following",
        "endpoints": {"sharedInbox": f"{base}/ap/inbox"},
        "manuallyApprovesFollowers": manually_approves,
        "discoverable": True,
        "published": published.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "publicKey": {"id": f"{me}#main-key", "owner": me, "publicKeyPem": public_key},
        "attachment": [
            {
                "type": "PropertyValue",
                "name": label,
                "value": f'<a href="{html.escape(url)}" rel="me nofollow noopener" '
                f'target="_blank">{html.escape(url)}</a>',
            }
            for label, url in [("Notices", base + "/"), *links]
        ],
    }
    if icon:
        doc["icon"] = {"type": "Image", "url": icon}
    return doc


def collection(id_: str, total: int, items: list[Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": AS,
        "id": id_,
        "type": "OrderedCollection",
        "totalItems": total,
    }
    if items is not None:
        doc["orderedItems"] = items
    return doc


def nodeinfo_links(base: str) -> dict[str, Any]:
    return {
        "links": [
            {
                "rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
                "href": f"{base}/nodeinfo/2.1",
            }
        ]
    }


def nodeinfo(version: str, users: int, posts: int, name: str) -> dict[str, Any]:
    return {
        "version": "2.1",
        "software": {
            "name": "clarion",
            "version": version,
            "homepage": "https://github.com/clarion-relay/clarion",
        },
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": []},
        "openRegistrations": False,
        "usage": {"users": {"total": users, "activeMonth": users}, "localPosts": posts},
        "metadata": {"nodeName": name},
    }


def _paragraphs(notice: Notice, languages: tuple[str, ...]) -> list[str]:
    info = notice.info(languages)
    out = [marked_headline(notice, languages)]
    if info is not None:
        out += [p for p in (info.description, info.instruction) if p]
        areas = "; ".join(a.description for a in info.areas if a.description)
        if areas:
            out.append(f"Areas: {areas}")
    return out


def note(
    notice: Notice,
    *,
    base: str,
    username: str,
    thread: int,
    permalink: str,
    languages: tuple[str, ...],
    hashtags: list[str],
    cancelled_text: bool = False,
    card: str | None = None,
) -> dict[str, Any]:
    """The Note a notice is (one per thread: its updates edit it, so Mastodon shows the edit).
    Test and Exercise notices carry a content warning, so no one takes them for real."""
    me = actor_id(base, username)
    info = notice.info(languages)
    lang = (info.language if info is not None else "en") or "en"
    paras = _paragraphs(notice, languages)
    tags = [t.lstrip("#") for t in hashtags if t.lstrip("#")]
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paras)
    body += f'<p><a href="{html.escape(permalink)}">{html.escape(permalink)}</a></p>'
    if tags:
        body += (
            "<p>"
            + " ".join(
                f'<a href="{base}/" class="mention hashtag" rel="tag">#<span>{t}</span></a>'
                for t in tags
            )
            + "</p>"
        )
    doc: dict[str, Any] = {
        "id": f"{me}/notes/{thread}",
        "type": "Note",
        "attributedTo": me,
        "to": [PUBLIC],
        "cc": [f"{me}/followers"],
        "url": permalink,
        "published": notice.sent.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "content": body,
        "contentMap": {lang.split("-")[0]: body},
        "tag": [{"type": "Hashtag", "href": f"{base}/", "name": f"#{t}"} for t in tags],
        "sensitive": False,
    }
    # The alert's images (CAP resources, https only), their descriptions as alt text; the
    # follower's server fetches and checks each itself, as it does for every remote post.
    images = [
        (r.uri, r.mime_type, r.description)
        for r in (info.resources if info is not None else [])
        if r.uri and r.uri.startswith("https://") and r.mime_type.startswith("image/")
    ][:4]
    if card is not None:  # the alert card, served by Clarion: its alt text
        images = [(f"{base}/notices/{thread}/card.png", "image/png", card), *images][:4]
    if images:
        doc["attachment"] = [
            {"type": "Document", "mediaType": mime, "url": uri, "name": alt}
            for uri, mime, alt in images
        ]
    if notice.status in (Status.TEST, Status.EXERCISE):
        doc["summary"] = f"{notice.status.value.upper()} — not a real alert"
        doc["sensitive"] = True
    if notice.msg_type is not MsgType.ALERT or cancelled_text:
        doc["updated"] = notice.sent.strftime("%Y-%m-%dT%H:%M:%SZ")
    return doc


def activity(kind: str, id_: str, actor_: str, obj: Any, published: datetime) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "id": id_,
        "type": kind,
        "actor": actor_,
        "object": obj,
        "published": published.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if isinstance(obj, dict) and "to" in obj:
        doc["to"], doc["cc"] = obj["to"], obj["cc"]
    else:
        doc["to"] = [PUBLIC]
    return doc


def accept(base: str, username: str, follow: dict[str, Any], accept_id: str) -> dict[str, Any]:
    return {
        "@context": AS,
        "id": accept_id,
        "type": "Accept",
        "actor": actor_id(base, username),
        "object": follow,
        "to": [follow.get("actor")],
    }
