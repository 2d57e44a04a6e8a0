"""Counting and fitting text to each platform's limit (pure)."""

from __future__ import annotations

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from clarion.model import MsgType, Status
from clarion.render.counting import count_graphemes, count_mastodon, count_x
from clarion.render.text import compose, compose_parts
from clarion.sources.cap import parse_cap
from tests.conftest import FIXTURES, fixture_bytes

LONG_URL = "https://www.weather.gov/" + "a" * 200


def test_mastodon_counts_urls_as_23_and_remote_mentions_as_local() -> None:
    assert count_mastodon(LONG_URL) == 23
    assert count_mastodon("hi @alerts@mastodon.example") == len("hi @alerts")
    assert count_mastodon("👩‍👩‍👧") == 1  # one grapheme cluster


def test_x_weighted_counting() -> None:
    assert count_x("a" * 10) == 10
    assert count_x("世界") == 4  # CJK counts 2
    assert count_x("👍") == 2  # emoji count 2
    assert count_x(LONG_URL) == 23


def test_bluesky_counts_graphemes() -> None:
    assert count_graphemes("e\u0301") == 1
    assert count_graphemes("🇨🇦") == 1


CAP_FILES = sorted(
    p.name
    for p in (FIXTURES / "cap").glob("*.cap")
    if p.name not in ("invalid.cap", "canada_errors.cap", "noaa_errors.cap", "xee.cap")
)


@pytest.mark.parametrize("name", CAP_FILES)
@pytest.mark.parametrize(
    ("limit", "count"),
    [(280, count_x), (500, count_mastodon), (300, count_graphemes), (120, count_mastodon)],
)
def test_every_real_alert_fits_and_keeps_headline_and_link(name, limit, count) -> None:
    [n] = parse_cap(fixture_bytes(f"cap/{name}"))
    r = compose(n, limit=limit, count=count, permalink="https://clarion.example/notices/7")
    assert r.count == count(r.text) <= limit
    link = n.link or "https://clarion.example/notices/7"
    assert r.text.endswith(link)
    if n.msg_type is MsgType.UPDATE:
        assert r.text.startswith("UPDATE: ")
    if n.msg_type is MsgType.CANCEL:
        assert r.text.startswith("CANCELLED: ")


def test_test_status_is_marked() -> None:
    [n] = parse_cap(fixture_bytes("cap/weather.cap"))
    r = compose(n.model_copy(update={"status": Status.TEST}), limit=500, count=count_mastodon)
    assert r.text.startswith("[TEST] ")


@given(headline=st.text(min_size=1, max_size=400), limit=st.integers(min_value=40, max_value=600))
def test_never_over_the_limit(headline: str, limit: int) -> None:
    [n] = parse_cap(fixture_bytes("cap/weather.cap"))
    info = n.infos[0].model_copy(update={"headline": headline})
    n = n.model_copy(update={"infos": [info]})
    for count in (count_x, count_mastodon, count_graphemes):
        r = compose(n, limit=limit, count=count)
        assert count(r.text) <= limit


URLISH = st.sampled_from(
    [
        "https://weather.gov/x",
        "www.weatheroffice.gc.ca",
        "example.com/a?b=c",
        "http://" + "a" * 40 + ".org",
        " ",
        "\r\n",
        "foo.bar",
        "@user",
        "#tag",
    ]
)


@given(
    parts=st.lists(
        st.one_of(st.text(st.characters(max_codepoint=127), max_size=30), URLISH), max_size=12
    )
)
def test_x_ascii_fast_path_matches_twitter_text(parts: list[str]) -> None:
    from twitter_text import parse_tweet

    text = "".join(parts)
    assert count_x(text) == parse_tweet(text).weightedLength


# Text in the languages alerts are written in (accents, Greek, Cyrillic, Hebrew, Arabic,
# Hangul jamo), with typographic punctuation, beside emoji and CJK that take twitter-text's path.
PLAIN = st.characters(
    codec="utf-8",
    categories=("L", "M", "N", "P", "Zs"),
    exclude_characters="\r",
)


@given(
    parts=st.lists(
        st.one_of(
            st.text(PLAIN, max_size=20),
            st.sampled_from(["é", "…", "–", "“”", "©", "®", "😷", "👍🏽", "日本", "1️⃣", "\r\n"]),
            URLISH,
        ),
        max_size=12,
    )
)
def test_x_count_matches_twitter_text_on_any_text(parts: list[str]) -> None:
    from twitter_text import parse_tweet

    text = "".join(parts)
    assert count_x(text) == parse_tweet(text).weightedLength


@settings(max_examples=400)
@given(
    parts=st.lists(
        st.one_of(
            st.text(max_size=12),
            URLISH,
            st.sampled_from(
                [
                    "t.co/abc",
                    "https://t.co/" + "x" * 50,
                    "@a.com",
                    "$b.org",
                    "-c.net",
                    "(d.io/x(y)z)",
                    "\u200ee.org",
                    "日本語.jp",
                    ".",
                    "\n",
                    "\u3000",
                    "\t",
                    "é",  # first in a text, the extractor took it for the character before
                    "\u2028",
                    "\x85",
                    "\xa0",
                ]
            ),
        ),
        max_size=16,
    )
)
def test_urls_found_word_by_word_are_the_extractors(parts: list[str]) -> None:
    from twitter_text.extract_urls import extract_urls_with_indices

    from clarion.render.counting import x_url_spans

    text = "".join(parts)
    whole = [tuple(u["indices"]) for u in extract_urls_with_indices(text)]
    assert x_url_spans(text) == whole


def test_graphemes_counted_without_a_scan_are_the_scans() -> None:
    """Each typographic character the grapheme count takes as one (`_ONE_EACH`), beside each
    character of that set, is two graphemes, as the grapheme scan finds."""
    import regex

    from clarion.render.counting import _ONE_EACH, count_graphemes

    scan = regex.compile(r"\X")
    alphabet = [chr(c) for c in range(0x2300) if _ONE_EACH.fullmatch(chr(c))]
    typographic = [ch for ch in alphabet if ch >= "\u0300"]
    assert "…" in typographic and "–" in typographic and "\u200d" not in alphabet
    for ch in typographic:
        for other in alphabet:
            for pair in (ch + other, other + ch):
                assert len(scan.findall(pair)) == 2, (hex(ord(ch)), hex(ord(other)))
    for text in ("Flood… “watch” — 5′", "a\r\n…", "é\u0301…"):
        assert count_graphemes(text) == len(scan.findall(text))


@given(
    st.text(
        st.one_of(
            st.characters(max_codepoint=0x2100),
            st.sampled_from(["\r", "\n", "…", "\u0301", "\u200d", "🇨", "🇦", "👍", "\U0001f3fd"]),
        ),
        max_size=40,
    )
)
def test_grapheme_count_is_the_scans(text: str) -> None:
    import regex

    assert count_graphemes(text) == len(regex.findall(r"\X", text))


def test_x_count_of_every_character_it_counts_itself() -> None:
    """Every character the fast path takes, alone, repeated and around a link, counts as
    twitter-text counts it."""
    from twitter_text import parse_tweet

    from clarion.render.counting import _X_PLAIN

    for cp in range(0x80, 0x2040):
        ch = chr(cp)
        if not _X_PLAIN.fullmatch(ch) or 0xD800 <= cp <= 0xDFFF:
            continue
        for text in (ch, f"a{ch * 3} b", f"{ch} https://example.org/{ch}"):
            assert count_x(text) == parse_tweet(text).weightedLength, hex(cp)


def test_kind_specific_text() -> None:
    from google.protobuf import text_format
    from google.transit import gtfs_realtime_pb2 as rt

    from clarion.sources.gtfsrt import parse_gtfsrt
    from clarion.sources.statuspage import parse_statuspage

    feed = text_format.Parse(
        fixture_bytes("gtfsrt/spec_example_alerts.asciipb").decode(), rt.FeedMessage()
    )
    [transit] = parse_gtfsrt(feed.SerializeToString())
    t = compose(transit, limit=500, count=count_mastodon).text
    assert "Routes: 219, 100" in t and "Stops: 16230, 16299" in t and "Areas:" not in t
    incident = parse_statuspage(fixture_bytes("statuspage/githubstatus-summary-2022-11-25.json"))[0]
    i = compose(incident, limit=500, count=count_mastodon).text
    assert "Status: Investigating. Affected: Packages, Pages" in i


def test_operator_template_is_sandboxed_and_fitted() -> None:
    import pytest as _pytest

    from clarion.config import ConfigError, parse_config
    from clarion.render.text import compose_template

    [n] = parse_cap(fixture_bytes("cap/weather.cap"))
    tpl = "{{ prefix }}⚠️ {{ headline|upper }}\n{{ description }}\n{{ link }}"
    r = compose_template(
        tpl, n, limit=200, count=count_mastodon, permalink="https://c.example/notices/1"
    )
    assert r.count <= 200 and r.text.startswith("⚠️ FLASH FLOOD WATCH ISSUED")
    assert r.text.endswith("https://c.example/notices/1")  # the description gave way, not the link
    assert "…" in r.text
    # The sandbox refuses reaching into Python internals.
    evil = "{{ headline.__class__.__mro__[1].__subclasses__() }}"
    with _pytest.raises(Exception, match=r"unsafe|access"):
        compose_template(evil, n, limit=500, count=count_mastodon)
    with _pytest.raises(ConfigError, match="template line 1"):
        parse_config('[channels.p]\nkind = "preview"\ntemplate = "{{ headline "\n', environ={})


def test_thread_parts_keep_every_word_in_order() -> None:
    """Split into parts, nothing is lost or reordered while it fits; it is cut only at the end
    of the last part, and one post is kept when the text fits in one."""
    notice = parse_cap(fixture_bytes("cap/weather.cap"))[0]
    link = "https://alerts.example/notices/1"
    parts = compose_parts(notice, limit=280, count=count_x, permalink=link, max_parts=25)
    assert 2 < len(parts) < 25  # all of it fits, in several parts
    assert parts[0].text.startswith("Flash Flood Watch issued") and link in parts[0].text
    joined = " ".join(
        regex.sub(r" \(\d+/\d+\)$", "", p.text.replace(f"\n\n{link}", "")) for p in parts
    )
    info = notice.infos[0]
    areas = "; ".join(a.description for a in info.areas)
    expected = f"{info.headline} Areas: {areas} {info.instruction or ''} {info.description}"
    assert joined.split() == expected.split()
    short = compose_parts(notice, limit=5000, count=count_x, permalink=link, max_parts=4)
    assert (
        len(short) == 1
        and short[0].text == compose(notice, limit=5000, count=count_x, permalink=link).text
    )
    capped = compose_parts(notice, limit=280, count=count_x, permalink=link, max_parts=2)
    assert len(capped) == 2 and capped[1].text.endswith("… (2/2)")


def test_every_text_channel_uses_the_channels_template() -> None:
    from clarion.channels.base import RenderContext
    from clarion.registry import render_for

    notice = parse_cap(fixture_bytes("cap/weather.cap"))[0]
    ctx = RenderContext(("en",), "https://c.example/n/1", template="{{ event }} now! {{ link }}")
    for platform in ("mastodon", "bluesky", "x", "threads"):
        assert render_for(platform, notice, ctx)["text"] == (
            "Flash Flood Watch now! https://c.example/n/1"
        ), platform
