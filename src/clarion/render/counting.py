"""How each platform counts the length of a post. Pure.

- Mastodon: every URL counts 23 characters whatever its length, and a remote mention
  `@user@domain` counts only `@user` (Mastodon's StatusLengthValidator).
- X: the weighted count of twitter-text v3 (URLs 23; most CJK, and emoji, count 2), computed by
  the twitter-text-parser library; text without emoji (checked against it) is counted here,
  as its emoji scan is most of the cost of rendering a notice.
- Bluesky: grapheme clusters (what a reader sees as one character), per the app.bsky.feed.post
  lexicon's `maxGraphemes: 300`.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable

import regex
from twitter_text import parse_tweet
from twitter_text.extract_urls import extract_urls_with_indices

URL_RE = regex.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")
REMOTE_MENTION_RE = regex.compile(r"(?<=^|[^\w])(@\w+)@[\w.-]+\w", regex.UNICODE)
MASTODON_URL_LENGTH = 23
X_URL_LENGTH = 23


_GRAPHEME = regex.compile(r"\X")


# Below U+0300 (where combining marks begin) every character is a grapheme, except CR LF,
# which is one; so is each of these typographic ones (dashes, quotes, the ellipsis a cut adds,
# primes), which join nothing: none combines, prepends or joins (a test checks each beside
# every character of this set against the grapheme scan).
_ONE_EACH = re.compile("[\x00-\u02ff\u2010-\u2027\u2030-\u205e]*")


def count_graphemes(text: str) -> int:
    # French, Spanish or German text, cut with an ellipsis, is counted without a grapheme scan.
    if text.isascii() or max(text) < "\u0300" or _ONE_EACH.fullmatch(text):
        return len(text) - text.count("\r\n")
    return len(_GRAPHEME.findall(text))


@functools.lru_cache(maxsize=8192)
def count_mastodon(text: str) -> int:
    text = URL_RE.sub("x" * MASTODON_URL_LENGTH, text)
    text = REMOTE_MENTION_RE.sub(r"\1", text)
    return count_graphemes(text)


# Characters that no emoji sequence of twitter-text's can hold, and whose weight is known:
# below U+2000 (but © and ®, which are emoji), general punctuation that weighs 1 in the v3
# config (dashes, quotes, primes) and the ellipsis (weighs 2). Text made only of these, after
# NFC, is counted here; anything else goes to twitter-text. A test checks every one of them,
# and a property test random text, against parse_tweet.
_X_PLAIN = re.compile("[\x00-\xa8\xaa-\xad\xaf-\u1fff\u2010-\u201f\u2026\u2032-\u2037]*")
_X_HEAVY = re.compile("[\u1100-\u1fff\u2026]")  # weight 2 (outside the weight-1 ranges)


@functools.lru_cache(maxsize=8192)  # compose counts the same candidate texts for every channel
def count_x(text: str) -> int:
    if text.isascii():
        return _count_x_ascii(text)
    normal = unicodedata.normalize("NFC", text)
    if _X_PLAIN.fullmatch(normal):
        return _count_x_plain(normal)
    return int(parse_tweet(text).weightedLength)


def _count_x_plain(text: str) -> int:
    """twitter-text's count for text that holds no emoji (see `_X_PLAIN`): each character
    weighs 1 or 2, and each URL 23 whatever it holds."""
    text = re.sub(r"\r\n|\r", "\n", text)

    def weight(part: str) -> int:
        return len(part) + len(_X_HEAVY.findall(part))

    length = weight(text)
    for start, end in x_url_spans(text):
        length -= weight(text[start:end]) - X_URL_LENGTH
    return length


def _count_x_ascii(text: str) -> int:
    """twitter-text's count for ASCII text, without its costly emoji scan.

    ASCII holds no emoji, and every ASCII character weighs 1 (the 0–4351 range of the v3
    config), so the count is the length with each URL (found by twitter-text's own extractor)
    counted as 23. A property test checks this equals `parse_tweet` on ASCII input.
    """
    text = text.replace("\r\n", "\n")
    length = len(text)
    for start, end in x_url_spans(text):
        length -= (end - start) - X_URL_LENGTH
    return length


_WORD = re.compile("[^ \n]+")


def x_url_spans(text: str) -> list[tuple[int, int]]:
    """Where twitter-text's extractor finds URLs in `text`, found word by word: its pattern,
    scanned over a whole post, was most of the cost of counting one (0.15 ms of an alert's
    ~2 ms ingest). It is the same answer: a URL holds no space or newline (twitter-text's
    domain, path and query characters exclude both), the character before it may be a space
    or the start alike, the one after a space or the end alike, and every URL's domain holds
    a dot, so words without one hold none (the extractor's own first check). Each word is
    given with the space or newline before it: at the start of a text the extractor takes
    the word's first character as "the character before" ("ét.co" is then "t.co"). A
    property test compares this with the extractor on random text."""
    spans = []
    for word in _WORD.finditer(text):
        if "." not in word.group():
            continue
        base = max(word.start() - 1, 0)
        spans += [(base + start, base + end) for start, end in _urls_in(text[base : word.end()])]
    return spans


# A word is counted again in each text `compose` tries (the head with the link, the head and
# the description cut here or there…), and the pattern costs 10 us a word, 120 us for a link
# to an IP address: the extractor's answer is kept per word.
@functools.lru_cache(maxsize=16384)
def _urls_in(segment: str) -> tuple[tuple[int, int], ...]:
    return tuple(
        (url["indices"][0], url["indices"][1]) for url in extract_urls_with_indices(segment)
    )


def count_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return cp >= 0x1F000 or 0x2600 <= cp <= 0x27BF or 0xFE00 <= cp <= 0xFE0F or cp == 0x200D


def count_threads(text: str) -> int:
    """Threads: 500 characters, an emoji counting its UTF-8 bytes (PLATFORMS.md)."""
    return sum(len(ch.encode("utf-8")) if _is_emoji(ch) else 1 for ch in text)


def count_utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


COUNTERS: dict[str, Callable[[str], int]] = {
    "graphemes": count_graphemes,
    "mastodon": count_mastodon,
    "x-weighted": count_x,
    "utf8-bytes": count_bytes,
    "utf16": count_utf16,
    "threads": count_threads,
}
