"""`Channel.render` returns a typed `Rendered` that the outbox row stores and gives back
unchanged: every platform's rendering of real notices (new, update, cancel; split into a thread
where the platform can; worded as new), through `to_row()`, JSON (what the database column
holds) and `from_row`, is equal to what the channel returned."""

from __future__ import annotations

import json

import pytest

from clarion import registry
from clarion.channels.base import Media, Outgoing, Post, RenderContext, Rendered
from clarion.sources import parsers
from tests.conftest import fixture_bytes

CTX = RenderContext(languages=("en",), permalink="https://clarion.example/notices/7", thread_id=7)
NOTICES = [
    ("cap", "cap/weather.cap", 0),
    ("cap", "cap/canada.cap", 0),
    ("cap", "cap/nws_multiple_polygons.cap", 0),
    ("cap", "cap/no_info_tag.cap", 0),
    ("feed", "feeds/wordpress-org-news.rss", 0),
    ("gtfsrt", "gtfsrt/bart-alerts.pb", 0),
    ("statuspage", "statuspage/githubstatus-summary-2022-11-25.json", 6),
]


def _through_the_row(r: Rendered) -> Rendered:
    return Rendered.from_row(json.loads(json.dumps(r.to_row())))


@pytest.mark.parametrize("kind", [k for k, c in registry.channels().items() if c.offline])
def test_every_channels_rendering_survives_the_outbox_row(kind: str) -> None:
    connector = registry.channel(kind)
    parts = 3 if connector.threadable else 1
    channel = connector.offline(parts)  # type: ignore[misc]
    try:
        for source, path, index in NOTICES:
            notice = parsers()[source](fixture_bytes(path), "")[index]
            r = channel.render(notice, CTX)
            assert isinstance(r, Rendered)
            assert _through_the_row(r) == r, (kind, path)
            worded_new = r.replace(as_new=channel.render(notice, CTX))
            assert _through_the_row(worded_new) == worded_new
            if r.posts:  # what the row holds is what the posts say
                row = r.to_row()
                assert row["text"] == r.text
                assert [p["text"] for p in row.get("thread", [])] == [p.text for p in r.posts[1:]]
    finally:
        channel.close()


def test_a_split_notice_is_several_posts_each_counted() -> None:
    notice = parsers()["cap"](fixture_bytes("cap/nws_multiple_polygons.cap"), "")[0]
    channel = registry.channel("mastodon").offline(4)  # type: ignore[misc]
    r = channel.render(notice, CTX)
    channel.close()
    assert r.parts > 1
    assert all(p.count is not None and p.count <= r.limit for p in r.posts)  # type: ignore[operator]
    assert Outgoing("d", notice, r.to_row(), None, None, 1).rendered == r


def test_every_typed_field_round_trips() -> None:
    r = Rendered(
        posts=(Post("one", 3, ({"index": {"byteStart": 0, "byteEnd": 3}},)), Post("two", 3)),
        limit=300,
        language="fr",
        media=(Media("https://example.org/map.png", "Map of the warned area"),),
        cost=0.2,
        warnings=("link dropped: it would cost more",),
        fields={"subject": "Flood Warning", "html": "<p>one</p>"},
        as_new=Rendered(posts=(Post("NEW: one", 8),), limit=300),
    )
    assert _through_the_row(r) == r
    assert r.to_row()["as_new"]["text"] == "NEW: one"
    assert Rendered.from_row({"type": "notice.created", "data": {}}).posts == ()
