"""Compose a notice into the text of one post, fitted to a platform's limit. Pure.

What a reader needs first goes first and is never cut: what kind of message this is (an update,
a cancellation, a test), the headline, and the link to the whole notice. Then, while room
remains: the areas, what to do (instruction), and the description, cut at a word with an ellipsis.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import regex

from clarion.model import MsgType, Notice, Status

ELLIPSIS = "…"


@dataclass(frozen=True)
class Rendered:
    text: str
    count: int
    limit: int
    language: str | None


def _prefix(notice: Notice) -> str:
    parts = []
    if notice.status is not Status.ACTUAL:
        parts.append(f"[{notice.status.value.upper()}]")
    if notice.msg_type is MsgType.UPDATE:
        parts.append("UPDATE:")
    elif notice.msg_type is MsgType.CANCEL:
        parts.append("CANCELLED:")
    elif notice.msg_type is MsgType.END:
        parts.append("RESOLVED:" if notice.kind == "statuspage" else "ENDED:")
    return " ".join(parts)


def headline(notice: Notice, languages: tuple[str, ...] = ()) -> str:
    info = notice.info(languages)
    if notice.msg_type is MsgType.CANCEL and (info is None or not (info.headline or info.event)):
        return "the earlier message has been cancelled."
    if info is None:
        return notice.note or notice.identifier
    return info.headline or info.event or notice.identifier


def _cut(text: str, room: int, count: Callable[[str], int]) -> str:
    """The longest prefix of `text` (cut at a word, ending in …) whose count fits in `room`.

    Platform counters can be slow (twitter-text scans for emoji on every call), so the cut is
    first placed by summing per-grapheme weights, then checked with the real counter and moved
    back a word at a time until it fits: a few real counts instead of a binary search of them.
    """
    if count(text) <= room:
        return text
    graphemes = regex.findall(r"\X", text)
    budget = room - _unit(count, ELLIPSIS)
    used, n = 0, 0
    for g in graphemes:
        used += _unit(count, g)
        if used > budget:
            break
        n += 1
    words = "".join(graphemes[:n]).split(" ")
    if n < len(graphemes) and len(words) > 1:
        words.pop()  # never end on half a word
    while words:
        cut = " ".join(words).rstrip(" ,;:-")
        candidate = cut + ELLIPSIS if cut else ""
        if not candidate or count(candidate) <= room:
            return candidate
        if len(words) > 1:
            words.pop()
        else:  # one long word: shorten it grapheme by grapheme
            g = regex.findall(r"\X", words[0])
            words = ["".join(g[:-1])] if len(g) > 1 else []
    return ""


@functools.lru_cache(maxsize=4096)
def _unit(count: Callable[[str], int], grapheme: str) -> int:
    return count(grapheme)


def notice_link(notice: Notice, permalink: str | None) -> str | None:
    return notice.link or permalink


def compose(
    notice: Notice,
    *,
    limit: int,
    count: Callable[[str], int],
    languages: tuple[str, ...] = (),
    permalink: str | None = None,
) -> Rendered:
    info = notice.info(languages)
    link = notice_link(notice, permalink)
    head = " ".join(p for p in (_prefix(notice), headline(notice, languages)) if p)
    tail = f"\n\n{link}" if link else ""
    # The headline itself may be too long for a tiny limit: cut it, keep the link.
    head = _cut(head, limit - count(tail), count) or _cut(head, limit, count)
    if count(head + tail) > limit:
        tail = ""
    text = head
    extras: list[str] = []
    if info is not None:
        areas = "; ".join(a.description for a in info.areas if a.description)
        if areas:
            extras.append(f"Areas: {areas}")
        if info.instruction and not notice.msg_type.closes:
            extras.append(info.instruction)
        if info.description:
            extras.append(info.description)
    if notice.msg_type.closes and notice.note:
        extras.insert(0, notice.note)
    for extra in extras:
        extra = " ".join(extra.split())
        room = limit - count(text + "\n\n" + tail)
        if room <= 10:
            break
        piece = _cut(extra, room, count)
        if piece:
            text = f"{text}\n\n{piece}"
        if piece != extra:
            break
    text += tail
    return Rendered(
        text=text,
        count=count(text),
        limit=limit,
        language=info.language if info is not None else None,
    )
