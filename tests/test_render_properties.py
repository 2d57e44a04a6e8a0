"""Property tests on hostile text: emoji, ZWJ sequences, combining marks, CJK, RTL, URLs,
mentions and hashtags. Every post fits its platform's limit by that platform's own counting
rule, and Bluesky facet byte ranges point exactly at their text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clarion.channels.bluesky import facets_for
from clarion.render.counting import (
    count_graphemes,
    count_mastodon,
    count_threads,
    count_utf16,
    count_x,
)
from clarion.render.text import compose, compose_parts
from clarion.sources.cap import parse_cap
from tests.conftest import fixture_bytes

PIECES = st.sampled_from(
    [
        "👩‍👩‍👧",
        "🇨🇦",
        "👍🏽",
        "e\u0301",
        "a\u0308\u0304",
        "東京都で大雨",
        "서울",
        "مرحبا بالعالم",
        "שלום",
        "https://www.weather.gov/alerts/MTZ014?x=1#top",
        "http://example.org/a(b)",
        "@alerts@mastodon.example",
        "@user.bsky.social",
        "#Flood",
        "#天気",
        " ",
        "\n",
        ".",
        ",",
        "x" * 40,
        "www.example.org",
    ]
)
TEXT = st.lists(st.one_of(PIECES, st.text(max_size=12)), max_size=40).map("".join)
BASE = parse_cap(fixture_bytes("cap/weather.cap"))[0]


@settings(max_examples=150, deadline=None)
@given(headline=TEXT, description=TEXT, limit=st.integers(min_value=30, max_value=600))
def test_every_post_fits_by_the_platforms_own_count(
    headline: str, description: str, limit: int
) -> None:
    info = BASE.infos[0].model_copy(
        update={"headline": headline or "x", "description": description or None}
    )
    notice = BASE.model_copy(update={"infos": [info]})
    for count in (count_x, count_mastodon, count_graphemes, count_utf16, count_threads):
        r = compose(notice, limit=limit, count=count, permalink="https://c.example/notices/1")
        assert count(r.text) <= limit


@settings(max_examples=100, deadline=None)
@given(
    headline=TEXT,
    description=st.lists(TEXT, min_size=1, max_size=6).map(" ".join),
    limit=st.integers(min_value=60, max_value=500),
    max_parts=st.integers(min_value=2, max_value=5),
)
def test_every_part_of_a_thread_fits_and_is_numbered(
    headline: str, description: str, limit: int, max_parts: int
) -> None:
    info = BASE.infos[0].model_copy(
        update={"headline": headline or "x", "description": description or None}
    )
    notice = BASE.model_copy(update={"infos": [info]})
    link = "https://c.example/notices/1"
    for count in (count_x, count_mastodon, count_graphemes, count_threads):
        parts = compose_parts(notice, limit=limit, count=count, permalink=link, max_parts=max_parts)
        assert 1 <= len(parts) <= max_parts
        for i, p in enumerate(parts, 1):
            assert count(p.text) <= limit and p.count == count(p.text)
            if len(parts) > 1:
                assert f" ({i}/{len(parts)})" in p.text
        if len(parts) > 1:
            assert parts[0].text.endswith(link)  # the first part stands alone: it has the link


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_facet_byte_ranges_point_at_their_text(text: str) -> None:
    raw = text.encode("utf-8")
    resolved: dict[str, str] = {}

    def resolve(handle: str) -> str:
        resolved.setdefault(handle, f"did:plc:{len(resolved)}")
        return resolved[handle]

    for f in facets_for(text, resolve):
        i = f["index"]
        piece = raw[i["byteStart"] : i["byteEnd"]].decode("utf-8")  # never splits a character
        feature = f["features"][0]
        if feature["$type"].endswith("#link"):
            assert piece == feature["uri"]
        elif feature["$type"].endswith("#mention"):
            assert resolved[piece.removeprefix("@").lower()] == feature["did"]
        else:
            assert piece == "#" + feature["tag"]


WORDS = st.lists(
    st.sampled_from(
        [
            "flood",
            "watch",
            "東京",
            "👩‍👩‍👧",
            "e\u0301te",
            "https://www.weather.gov/alerts/MTZ014",
            "@alerts@mastodon.example",
            "#Flood",
            "www.example.org/path",
            "مرحبا",
        ]
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(words=WORDS, limit=st.integers(min_value=40, max_value=300))
def test_cuts_never_split_a_link_mention_or_hashtag(words: list[str], limit: int) -> None:
    whole = set(words)
    info = BASE.infos[0].model_copy(
        update={
            "headline": "Alert",
            "description": " ".join(words),
            "instruction": None,
            "areas": [],
        }
    )
    notice = BASE.model_copy(update={"infos": [info]})
    r = compose(notice, limit=limit, count=count_mastodon, permalink="https://c.example/n/1")
    body = r.text.removesuffix("https://c.example/n/1")
    for token in body.replace("\n", " ").split(" "):
        token = token.removesuffix("…")
        if token.startswith(("http", "www.", "@", "#")):
            assert token in whole, token  # whole, or not there at all


@given(
    text=st.lists(
        st.one_of(
            st.sampled_from(["\r\n", "\r", "\n", "\u00ad", "é", "ß"]),
            st.text(alphabet=st.characters(max_codepoint=0x2FF), max_size=8),
        ),
        max_size=30,
    ).map("".join)
)
def test_the_counters_shortcut_below_combining_marks_counts_graphemes(text: str) -> None:
    """Below U+0300 every character is its own grapheme but CR LF: the shortcut that skips the
    grapheme scan there agrees with the scan."""
    import regex

    assert count_graphemes(text) == len(regex.findall(r"\X", text))
