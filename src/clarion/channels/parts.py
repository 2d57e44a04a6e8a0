"""A notice posted as a thread of numbered parts, when a channel allows `thread_parts > 1`.

The renderer (`render.text.compose_parts`) decides the parts; the payload keeps the first in
`text` (so everything that reads one post still works) and the rest in `thread`. Sending posts
them in order, each a reply to the one before, and records each posted part through the
delivery's `checkpoint`: an attempt after a failure (or after a crash, on platforms that can
deduplicate) carries on after the parts already out instead of posting them again.

The receipt of a split delivery names the *last* part (what a later update replies under) and
keeps the first in `extra["first"]` (what a cancel edits, and Bluesky's thread root).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clarion.channels.base import Outgoing, Receipt
from clarion.render.text import Fitted

# post_one(index, text, parent, root) posts part `index` as a reply under `parent` (None for a
# brand-new thread) and returns its receipt; `root` is the thread's first post, if any.
PostOne = Callable[[int, str, Receipt | None, Receipt | None], Receipt]


def payload_fields(parts: list[Fitted]) -> dict[str, Any]:
    first = parts[0]
    fields: dict[str, Any] = {
        "text": first.text,
        "count": first.count,
        "limit": first.limit,
        "language": first.language,
    }
    if len(parts) > 1:
        fields["thread"] = [{"text": p.text, "count": p.count} for p in parts[1:]]
    return fields


def part_texts(payload: dict[str, Any]) -> list[str]:
    return [str(payload["text"]), *(str(p["text"]) for p in payload.get("thread") or [])]


def receipt_dict(r: Receipt) -> dict[str, Any]:
    return {"post_id": r.post_id, "url": r.url, "extra": dict(r.extra)}


def receipt_from(data: dict[str, Any]) -> Receipt:
    return Receipt(post_id=str(data["post_id"]), url=data.get("url"), extra=data.get("extra") or {})


def thread_start(r: Receipt) -> Receipt:
    """The first post behind a receipt (itself, unless it was a split delivery)."""
    first = r.extra.get("first")
    return receipt_from(first) if isinstance(first, dict) else r


def part_key(delivery_id: str, index: int) -> str:
    """A per-part idempotency key; the first part keeps the delivery id itself."""
    return delivery_id if index == 0 else f"{delivery_id}:{index}"


def post_parts(out: Outgoing, post_one: PostOne) -> Receipt:
    texts = part_texts(out.payload)
    done = [receipt_from(d) for d in (out.progress or {}).get("parts", [])][: len(texts)]
    root = thread_start(out.root) if out.root is not None else None
    parent = done[-1] if done else out.previous
    for i in range(len(done), len(texts)):
        posted = post_one(i, texts[i], parent, root or (done[0] if done else None))
        done.append(posted)
        if i + 1 < len(texts) and out.checkpoint is not None:
            out.checkpoint({"parts": [receipt_dict(d) for d in done]})
        parent = posted
    if len(done) == 1:
        return done[0]
    first, last = done[0], done[-1]
    return Receipt(
        post_id=last.post_id,
        url=first.url,
        extra={**last.extra, "first": receipt_dict(first), "parts": [d.post_id for d in done]},
    )
