"""Compose a notice into the text of one post, fitted to a platform's limit. Pure.

What a reader needs first goes first and is never cut: what kind of message this is (an update,
a cancellation, a test), the headline, and the link to the whole notice. Then, while room
remains: the areas, what to do (instruction), and the description, cut at a word with an ellipsis.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import regex
from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from clarion.model import Info, MsgType, Notice, Status

ELLIPSIS = "…"
_LINKLIKE = regex.compile(r"^(?:https?://|www\.|@|#)")
_GRAPHEME = regex.compile(r"\X")


@dataclass(frozen=True)
class Fitted:
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


def marked_headline(notice: Notice, languages: tuple[str, ...] = ()) -> str:
    """The headline as every channel shows it: "[TEST] UPDATE: …", "CANCELLED: …"."""
    head = headline(notice, languages)
    prefix = _prefix(notice)
    return f"{prefix} {head}" if prefix else head


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
    budget = room - _unit(count, ELLIPSIS)
    # Graphemes are read only as far as the budget goes: a long description is split into
    # graphemes up to the cut, not to its end (that split cost more than the rest of a render).
    head = text[: max(budget, 0) + 1]
    if head.isascii() and "\r" not in head and _ascii_units_are_one(count):
        # Each ASCII character (but CR) is one grapheme of weight 1 for this counter.
        kept_text = text[: max(budget, 0)]
        partial = len(text) > len(kept_text)
    else:
        kept: list[str] = []
        used, partial = 0, False
        for match in _GRAPHEME.finditer(text):
            g = match.group()
            used += _unit(count, g)
            if used > budget:
                partial = True
                break
            kept.append(g)
        kept_text = "".join(kept)
    words = kept_text.split(" ")
    if partial:  # the last word is partial
        if len(words) > 1:
            words.pop()  # never end on half a word
        elif _LINKLIKE.match(words[0]):
            return ""  # nor on half a link
    # An ellipsis glued to a link, a mention or a hashtag would change what it points to.
    while len(words) > 1 and _LINKLIKE.match(words[-1]):
        words.pop()
    while words:
        cut = " ".join(words).rstrip(" ,;:-")
        candidate = cut + ELLIPSIS if cut else ""
        if not candidate or count(candidate) <= room:
            return candidate
        if len(words) > 1:
            words.pop()
        elif _LINKLIKE.match(words[0]):
            return ""  # half a link is worse than none: the post's own link follows anyway
        else:  # one long word: shorten it grapheme by grapheme
            g = _GRAPHEME.findall(words[0])
            words = ["".join(g[:-1])] if len(g) > 1 else []
    return ""


def cut(text: str, room: int, count: Callable[[str], int]) -> str:
    """`text` cut at a word to fit `room` by `count`, ending in … when cut (see `_cut`)."""
    return _cut(text, room, count)


@functools.lru_cache(maxsize=4096)
def _unit(count: Callable[[str], int], grapheme: str) -> int:
    return count(grapheme)


@functools.lru_cache(maxsize=64)
def _ascii_units_are_one(count: Callable[[str], int]) -> bool:
    """Whether this counter weighs every printable ASCII character, tab and newline as 1."""
    return all(_unit(count, chr(c)) == 1 for c in (9, 10, *range(32, 127)))


def notice_link(notice: Notice, permalink: str | None) -> str | None:
    return notice.link or permalink


# The last few compositions, so that channels of the same profile render a notice once (the
# preview's Mastodon text and a Mastodon channel, two Mastodon accounts): keyed by the notice
# object itself (held here, so its id cannot be reused while cached) and every other input.
_RECENT: OrderedDict[tuple[Any, ...], tuple[Notice, Fitted]] = OrderedDict()
_RECENT_SIZE = 64
_RECENT_LOCK = threading.Lock()


def compose(
    notice: Notice,
    *,
    limit: int,
    count: Callable[[str], int],
    languages: tuple[str, ...] = (),
    permalink: str | None = None,
    template: str | None = None,
) -> Fitted:
    key = (id(notice), limit, count, tuple(languages), permalink, template)
    with _RECENT_LOCK:
        hit = _RECENT.get(key)
    if hit is not None and hit[0] is notice:
        return hit[1]
    fitted = _compose(
        notice,
        limit=limit,
        count=count,
        languages=languages,
        permalink=permalink,
        template=template,
    )
    with _RECENT_LOCK:
        _RECENT[key] = (notice, fitted)
        while len(_RECENT) > _RECENT_SIZE:
            _RECENT.popitem(last=False)
    return fitted


def _compose(
    notice: Notice,
    *,
    limit: int,
    count: Callable[[str], int],
    languages: tuple[str, ...] = (),
    permalink: str | None = None,
    template: str | None = None,
) -> Fitted:
    if template:
        return compose_template(
            template, notice, limit=limit, count=count, languages=languages, permalink=permalink
        )
    info = notice.info(languages)
    link = notice_link(notice, permalink)
    head = _head(notice, languages)
    tail = f"\n\n{link}" if link else ""
    # The headline itself may be too long for a tiny limit: cut it, keep the link.
    head = _cut(head, limit - count(tail), count) or _cut(head, limit, count)
    if count(head + tail) > limit:
        tail = ""
    text = head
    extras = _extras(notice, info)
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
    return Fitted(
        text=text,
        count=count(text),
        limit=limit,
        language=info.language if info is not None else None,
    )


def _head(notice: Notice, languages: tuple[str, ...]) -> str:
    return " ".join(p for p in (_prefix(notice), headline(notice, languages)) if p)


def _paragraphs(notice: Notice, languages: tuple[str, ...]) -> list[str]:
    """Everything a post could say, in order, each paragraph on one line: the head, then what
    `compose` adds while room remains."""
    info = notice.info(languages)
    extras = _extras(notice, info)
    if notice.msg_type.closes and notice.note:
        extras.insert(0, notice.note)
    return [_head(notice, languages), *(" ".join(e.split()) for e in extras if e.strip())]


def compose_parts(
    notice: Notice,
    *,
    limit: int,
    count: Callable[[str], int],
    languages: tuple[str, ...] = (),
    permalink: str | None = None,
    template: str | None = None,
    max_parts: int = 1,
) -> list[Fitted]:
    """The notice as a thread of up to `max_parts` numbered posts, when one post cannot hold it.

    The first part carries the headline and the link to the whole notice, so it stands alone;
    every part ends with its number, " (2/3)", counted within the limit. Words are never split
    (nor links, mentions, hashtags); text that still does not fit in `max_parts` is cut at a
    word with an ellipsis at the end of the last part. With `max_parts = 1`, or when the whole
    text fits in one post, this is exactly `compose`.
    """
    single = compose(
        notice,
        limit=limit,
        count=count,
        languages=languages,
        permalink=permalink,
        template=template,
    )
    if max_parts <= 1:
        return [single]
    if template:
        full = _render_template(template, notice, languages, permalink)
        paragraphs, link = [p for p in full.split("\n\n") if p.strip()], None
    else:
        paragraphs, link = _paragraphs(notice, languages), notice_link(notice, permalink)
    whole = "\n\n".join(paragraphs) + (f"\n\n{link}" if link else "")
    if count(whole) <= limit:
        return [single]
    texts: list[str] | None = None
    for n in range(2, max_parts + 1):
        texts = _split(paragraphs, link, n, limit, count, last=n == max_parts)
        if texts is not None:
            break
    if texts is None:  # even the first part cannot hold the headline and the link
        return [single]
    language = single.language
    return [Fitted(text=t, count=count(t), limit=limit, language=language) for t in texts]


def _split(
    paragraphs: list[str],
    link: str | None,
    n: int,
    limit: int,
    count: Callable[[str], int],
    *,
    last: bool,
) -> list[str] | None:
    """Fill `n` numbered parts greedily, word by word. None when the text needs more than `n`
    (unless `last`: then the final part is cut with an ellipsis)."""
    tokens: list[tuple[str, str]] = []  # (separator before, word)
    for i, para in enumerate(paragraphs):
        for j, word in enumerate(para.split(" ")):
            tokens.append(("\n\n" if i and not j else " " if j else "", word))
    tail = f"\n\n{link}" if link else ""

    def suffix(i: int) -> str:
        return f" ({i}/{n})" + (tail if i == 1 else "")

    parts: list[str] = []
    current = ""
    k = 0
    while k < len(tokens):
        sep, word = tokens[k]
        i = len(parts) + 1
        candidate = (current + sep + word) if current else word
        if count(candidate + suffix(i)) <= limit:
            current = candidate
            k += 1
            continue
        if not current:  # one word longer than a whole part: cut it
            current = _cut(word, limit - count(suffix(i)), count)
            if not current:
                return None
            k += 1
        if i == n:
            if not last:
                return None
            rest = "".join(sep + w for sep, w in tokens[k:]).lstrip()
            room = limit - count(suffix(i))
            current = _cut(current + " " + rest, room, count) if rest else current
            k = len(tokens)
            break
        parts.append(current + suffix(i))
        current = ""
    if current:
        parts.append(current + suffix(len(parts) + 1))
    # Fewer than n cannot happen: n grows from 2 and narrower numbers only fit more per part.
    return parts if len(parts) == n else None


def _names(notice: Notice, kinds: tuple[str, ...]) -> str:
    return ", ".join(e.name or e.id for e in notice.entities if e.kind in kinds)


def _extras(notice: Notice, info: Info | None) -> list[str]:
    """What follows the headline, most important first, by kind of notice:
    a hazard alert (areas, what to do, details), a transit service change (routes and stops,
    details), a status incident (status, affected components, details), a post (its summary)."""
    extras: list[str] = []
    if info is None:
        return extras
    if notice.kind == "gtfsrt":
        routes, stops = _names(notice, ("route", "route_type")), _names(notice, ("stop",))
        if routes:
            extras.append(f"Routes: {routes}")
        if stops:
            extras.append(f"Stops: {stops}")
    elif notice.kind == "statuspage":
        components = _names(notice, ("component",))
        extras.append(f"Status: {info.event}" + (f". Affected: {components}" if components else ""))
    elif notice.kind != "feed":
        areas = "; ".join(a.description for a in info.areas if a.description)
        if areas:
            extras.append(f"Areas: {areas}")
    if info.instruction and not notice.msg_type.closes:
        extras.append(info.instruction)
    if info.description:
        extras.append(info.description)
    return extras


_SANDBOX = SandboxedEnvironment(autoescape=False, keep_trailing_newline=False)


def template_context(
    notice: Notice,
    languages: tuple[str, ...],
    permalink: str | None,
    description: str | None = None,
) -> dict[str, Any]:
    info = notice.info(languages)
    return {
        "prefix": _prefix(notice),
        "headline": headline(notice, languages),
        "event": info.event if info else "",
        "areas": "; ".join(a.description for a in info.areas if a.description) if info else "",
        "instruction": (info.instruction or "") if info else "",
        "description": description
        if description is not None
        else ((info.description or "") if info else ""),
        "severity": notice.severity.value,
        "status": notice.status.value,
        "msg_type": notice.msg_type.value,
        "sender": (info.sender_name if info else None) or notice.sender,
        "entities": [{"kind": e.kind, "id": e.id, "name": e.name} for e in notice.entities],
        "link": notice_link(notice, permalink) or "",
    }


def check_template(source: str) -> None:
    """Raise ValueError naming the problem if a channel's template does not compile."""
    try:
        _SANDBOX.from_string(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"template line {exc.lineno}: {exc.message}") from None


def compose_template(
    template: str,
    notice: Notice,
    *,
    limit: int,
    count: Callable[[str], int],
    languages: tuple[str, ...] = (),
    permalink: str | None = None,
) -> Fitted:
    """An operator's Jinja2 template (sandboxed). When the result is too long, the description
    is shortened first (cut at a word, with …); only then is the whole text cut."""
    tpl = _SANDBOX.from_string(template)
    ctx = template_context(notice, languages, permalink)

    def render(description: str) -> str:
        out = tpl.render(**{**ctx, "description": description})
        return "\n".join(line.rstrip() for line in out.strip().splitlines())

    text = render(str(ctx["description"]))
    if count(text) > limit and ctx["description"]:
        overflow = count(text) - limit
        desc = str(ctx["description"])
        room = max(0, count(desc) - overflow)
        text = render(_cut(desc, room, count))
    if count(text) > limit:
        text = _cut(text, limit, count)
    info = notice.info(languages)
    return Fitted(
        text=text,
        count=count(text),
        limit=limit,
        language=info.language if info is not None else None,
    )


def _render_template(
    template: str, notice: Notice, languages: tuple[str, ...], permalink: str | None
) -> str:
    out = _SANDBOX.from_string(template).render(**template_context(notice, languages, permalink))
    return "\n".join(line.rstrip() for line in out.strip().splitlines())
