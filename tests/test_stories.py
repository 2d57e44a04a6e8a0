"""How a story lives, over time, on real feeds: scenarios played with `clarion rehearse`.

One test per class of defect found when Clarion met real captures (issue "Every real alert
posted, exactly its lifecycle"). Each asserts exactly what each channel receives and skips.
"""

from __future__ import annotations

import json
from pathlib import Path

from clarion.store import Store
from tests.scenarios import (
    FIXTURES,
    Scenario,
    collection,
    derive,
    feature,
    ref,
    sent,
    skips,
    tail_of,
)

NWS = """
[sources.nws]
kind = "nws"
user_agent = "clarion-tests (ops@example.org)"
"""
MASTODON = """
[channels.masto]
kind = "mastodon"
instance = "https://mastodon.invalid"
token = { env = "UNUSED_IN_REHEARSAL" }

[[routes]]
channels = ["masto"]
"""


def _segments() -> tuple[dict, dict, dict]:
    """A Winter Storm Warning (P) that the next product splits into two segments for two zone
    groups, each referencing P: the real segments .002 and .003 of one NWS product, their
    references pointed at one predecessor (as NWS does when it splits a segment)."""
    s2, s3 = feature("563376ca21e454.002.1"), feature("563376ca21e454.003.1")
    warning = feature("563376ca21e454.001.1")
    p_ident = s2["properties"]["references"][0]["identifier"]
    p = derive(
        warning,
        id=p_ident,
        messageType="Alert",
        references=[],
        sent="2026-11-27T03:00:00+00:00",
        areaDesc=f"{s2['properties']['areaDesc']}; {s3['properties']['areaDesc']}",
    )
    s2 = derive(s2, references=[ref(p)])
    s3 = derive(s3, references=[ref(p)])
    return p, s2, s3


def test_segments_are_branches_each_posted_and_each_ended_alone(tmp_path: Path) -> None:
    p, s2, s3 = _segments()
    cancel2 = derive(
        s2,
        id=s2["properties"]["id"].replace(".002.1", ".002.2"),
        messageType="Cancel",
        sent="2026-11-27T08:30:00+00:00",
        references=[ref(s2)],
    )
    sc = Scenario(tmp_path, NWS + MASTODON)
    sc.step("2026-11-27T07:00:00Z", "nws", collection(p))
    sc.step("2026-11-27T08:00:00Z", "nws", collection(s2, s3))
    sc.step("2026-11-27T09:00:00Z", "nws", collection(cancel2, s3))
    sc.step("2026-11-27T10:00:00Z", "nws", collection())  # s3 missing: 1
    sc.step("2026-11-27T10:05:00Z", "nws", status=304)  # still missing: 2 (a 304 counts)
    sc.step("2026-11-27T10:10:00Z", "nws", collection())  # same bytes: 304 by ETag: 3
    events = sc.play()
    p_id, s2_id, s3_id = (x["properties"]["id"] for x in (p, s2, s3))
    tail = {p_id: "P", s2_id: "S2", s3_id: "S3", cancel2["properties"]["id"]: "C2"}
    tail[s3_id + "#ended"] = "S3 ended"
    got = [
        (e["at"][11:16], e["action"], tail[e["identifier"]], tail.get(e["reply_to"] or ""))
        for e in events
        if e["action"] != "skip"
    ]
    assert got == [
        ("07:00", "post", "P", None),
        # Both segments go out, each a reply under the warning they continue.
        ("08:00", "reply", "S2", "P"),
        ("08:00", "reply", "S3", "P"),
        # The cancel of one segment replies under that segment only; S3 lives on.
        ("09:00", "reply", "C2", "S2"),
        # S3 missing from three polls in a row, one of them answered 304: ended, under S3.
        ("10:10", "reply", "S3 ended", "S3"),
    ]
    texts = {tail[e["identifier"]]: e["text"] for e in events if e["action"] != "skip"}
    assert texts["C2"].startswith("CANCELLED:")
    assert texts["S3 ended"].startswith("ENDED:")
    assert "West Slopes South Central Cascades" in texts["S2"]
    assert "West Slopes North Central Cascades" in texts["S3"]
    assert not skips(events)


def test_one_segment_in_the_wrong_shape_holds_back_nothing_and_ends_nothing(
    tmp_path: Path,
) -> None:
    """The next product's segment S2 comes with its geometry as a string (a publisher's bug):
    it made the whole poll fail, so its sibling S3 was not posted until the publisher fixed
    S2. Now S2 alone is rejected, S3 goes out at once, S2 (still listed, still odd) is neither
    posted nor taken for ended, and it goes out once the publisher fixes it."""
    p, s2, s3 = _segments()
    odd = derive(s2)
    odd["geometry"] = "POLYGON((-121.5 47.2, -121.1 47.2, -121.1 46.9, -121.5 47.2))"
    sc = Scenario(tmp_path, NWS + MASTODON)
    sc.step("2026-11-27T07:00:00Z", "nws", collection(p))
    sc.step("2026-11-27T08:00:00Z", "nws", collection(odd, s3))
    sc.step("2026-11-27T08:30:00Z", "nws", collection(odd, s3, p))
    sc.step("2026-11-27T09:00:00Z", "nws", collection(s3, odd))
    sc.step("2026-11-27T10:00:00Z", "nws", collection(s2, s3))  # fixed
    events = sc.play()
    name = {x["properties"]["id"]: n for x, n in ((p, "P"), (s2, "S2"), (s3, "S3"))}
    got = [
        (e["at"][11:16], e["action"], name[e["identifier"]], name.get(e["reply_to"] or ""))
        for e in events
        if e["action"] != "skip"
    ]
    assert got == [
        ("07:00", "post", "P", None),
        ("08:00", "reply", "S3", "P"),
        ("10:00", "reply", "S2", "P"),
    ]
    rejected = [
        (e["at"][11:16], name.get(e["identifier"])) for e in events if e["action"] == "skip"
    ]
    assert rejected == [("08:00", "S2"), ("08:30", "S2"), ("09:00", "S2")]
    assert all(
        "not in the shape its format promises" in e["reason"]
        for e in events
        if e["action"] == "skip"
    )


def test_an_expired_message_whose_event_goes_on_is_posted_as_a_new_alert(tmp_path: Path) -> None:
    """weather.gov's rule: over at `ends` when there is one, else at `expires`. At 18:00 the
    Winter Weather Advisory's message has expired (17:19) but its event ends the next day: it
    is posted, worded as a new alert (nothing of its story was posted before). The Severe
    Thunderstorm Warning has no `ends` and expired at 12:14: it is over, and not posted."""
    advisory = feature("e794a4.001.1")
    storm = feature("3b7985.001.1")
    assert advisory["properties"]["expires"] < "2026-11-27T18:00"
    assert advisory["properties"]["messageType"] == "Update"
    sc = Scenario(tmp_path, NWS + MASTODON)
    sc.step("2026-11-27T18:00:00Z", "nws", collection(advisory, storm))
    sc.step("2026-11-28T23:00:00Z", "nws", collection(advisory, storm))  # 304: nothing new
    events = sc.play()
    assert sent(events) == [("2026-11-27T18:00:00Z", "masto", "post", tail_of(advisory), None)]
    post = next(e for e in events if e["action"] == "post")
    assert post["text"].startswith("Winter Weather Advisory")  # not "UPDATE: …" of nothing
    assert skips(events) == [("-", tail_of(storm), "over at 2026-11-27T12:14:00Z")]


SEVERE_ONLY = """
[channels.sirens]
kind = "mastodon"
instance = "https://sirens.invalid"
token = { env = "UNUSED_IN_REHEARSAL" }

[[routes]]
channels = ["sirens"]
min_severity = "severe"
"""


def test_the_first_post_on_a_channel_is_worded_as_new_even_for_an_update(tmp_path: Path) -> None:
    """An advisory (moderate) reaches only `masto`; its upgrade to a warning (severe) reaches
    `sirens` too, where nothing of the story was posted: there it is a new alert, not a reply."""
    advisory = feature("563376ca21e454.002.1")
    advisory = derive(advisory, messageType="Alert", references=[])
    warning = derive(
        feature("563376ca21e454.001.1"),
        id=advisory["properties"]["id"].replace(".002.1", ".002.2"),
        references=[ref(advisory)],
        sent="2026-11-27T09:00:00+00:00",
    )
    sc = Scenario(tmp_path, NWS + MASTODON + SEVERE_ONLY)
    sc.step("2026-11-27T08:00:00Z", "nws", collection(advisory))
    sc.step("2026-11-27T09:00:00Z", "nws", collection(warning))
    events = sc.play()
    a, w = tail_of(advisory), tail_of(warning)
    assert sent(events) == [
        ("2026-11-27T08:00:00Z", "masto", "post", a, None),
        ("2026-11-27T09:00:00Z", "masto", "reply", w, a),
        ("2026-11-27T09:00:00Z", "sirens", "post", w, None),
    ]
    text = {(e["channel"], e["action"]): e["text"] for e in events}
    assert text[("masto", "reply")].startswith("UPDATE: Winter Storm Warning")
    assert text[("sirens", "post")].startswith("Winter Storm Warning")


PARTNER = """
[sources.partner]
kind = "push"
"""


def test_another_source_cannot_cancel_or_continue_a_story(tmp_path: Path) -> None:
    """A partner's push names the NWS warning in its references, with the NWS's own sender:
    it is a story of the partner's own, and the NWS warning is neither cancelled nor updated.
    A second NWS source cancels it only when the operator joined the two (`stories_with`)."""
    p, s2, _ = _segments()
    cancel = {
        "identifier": "partner-cancel-1",
        "sender": p["properties"]["sender"],
        "sent": "2026-11-27T08:00:00+00:00",
        "msg_type": "cancel",
        "references": [p["properties"]["id"]],
        "headline": "All clear",
    }
    twin_cancel = derive(
        s2,
        id=p["properties"]["id"][:-1] + "9",
        messageType="Cancel",
        references=[ref(p)],
        sent="2026-11-27T09:00:00+00:00",
    )
    head = NWS + PARTNER + '\n[sources.mirror]\nkind = "nws"\nuser_agent = "tests (a@b.c)"\n'
    sc = Scenario(tmp_path, head + MASTODON)
    sc.step("2026-11-27T07:00:00Z", "nws", collection(p))
    sc.step("2026-11-27T08:00:00Z", "partner", json.dumps(cancel).encode())
    sc.step("2026-11-27T09:00:00Z", "mirror", collection(twin_cancel))
    events = sc.play()
    assert sent(events) == [("2026-11-27T07:00:00Z", "masto", "post", tail_of(p), None)]
    assert skips(events) == [
        (
            "masto",
            "partner-cancel-1",
            "nothing was posted on this channel for this thread, so there is nothing to cancel",
        ),
        (
            "masto",
            tail_of(twin_cancel),
            "nothing was posted on this channel for this thread, so there is nothing to cancel",
        ),
    ]

    # The same cancel from a source the operator joined to the NWS one: it cancels.
    joined = tmp_path / "joined"
    joined.mkdir()
    head = head.replace(
        'kind = "nws"\nuser_agent = "tests',
        'kind = "nws"\nstories_with = ["nws"]\nuser_agent = "tests',
    )
    sc = Scenario(joined, head + MASTODON)
    sc.step("2026-11-27T07:00:00Z", "nws", collection(p))
    sc.step("2026-11-27T09:00:00Z", "mirror", collection(twin_cancel))
    assert sent(sc.play()) == [
        ("2026-11-27T07:00:00Z", "masto", "post", tail_of(p), None),
        ("2026-11-27T09:00:00Z", "masto", "reply", tail_of(twin_cancel), tail_of(p)),
    ]


def _index_with_third_entry() -> bytes:
    """NWS's alerts-beta index (real), with its first entry copied as a third (new id, link)."""
    text = (FIXTURES / "cap" / "weather_index.atom").read_text()
    start, end = text.index("<entry>"), text.index("</entry>") + len("</entry>")
    third = text[start:end].replace("CT20100831030400OKX", "CT20100831030400OKXTHIRD")
    return text.replace("</feed>", third + "\n</feed>").encode()


def _links(index: bytes) -> list[str]:
    import re

    return re.findall(r"<link href='([^']+\?x=[^']+)'", index.decode())


def test_one_bad_document_never_blocks_its_index(tmp_path: Path) -> None:
    """An index lists three documents: one whose dates are absurd (year 9999), one that answers
    404, one good. The good one is posted, the bad ones rejected with their reasons, and the
    missing one is fetched again at the next poll (the index then answers the same) and posted."""
    index = _index_with_third_entry()
    first, second, third = _links(index)
    good = (FIXTURES / "cap" / "weather.cap").read_bytes()
    absurd = good.replace(b"<sent>2010-08-30T04:07:00", b"<sent>9999-08-30T04:07:00").replace(
        b"<identifier>NOAA", b"<identifier>ABSURD-NOAA"
    )
    quake = (FIXTURES / "cap" / "earthquake.cap").read_bytes()
    head = f"""
[clarion]
drop_expired = false

[sources.cap]
kind = "cap"
url = "{PLACEHOLDER}"
max_age = 0
{MASTODON}"""
    sc = Scenario(tmp_path, head)
    sc.step(
        "2026-11-27T08:00:00Z", "cap", index, suffix=".atom", urls={first: good, second: absurd}
    )
    sc.step(
        "2026-11-27T09:00:00Z",
        "cap",
        index,
        suffix=".atom",
        urls={first: good, second: absurd, third: quake},
    )
    events = sc.play()
    assert [
        (e["at"][11:16], e["action"], e["identifier"][:22]) for e in events if e["action"] != "skip"
    ] == [
        ("08:00", "post", "NOAA-NWS-ALERTS-MT2010"),
        ("09:00", "post", "USGS-earthquakes-us201"),
    ]
    rejected = [
        (e["at"][11:16], e["identifier"], e["reason"]) for e in events if e["action"] == "skip"
    ]
    assert [(at, item) for at, item, _ in rejected] == [("08:00", second), ("08:00", third)]
    assert "invalid_date" in rejected[0][2] and "out of range" in rejected[0][2]
    assert "fetch_failed" in rejected[1][2] and "HTTP 404" in rejected[1][2]


PLACEHOLDER = "https://alerts.example.org/index.atom"


def _rss_items(text: str) -> tuple[str, list[str], str]:
    """The real wordpress.org News feed cut into its head, its ten items and its tail."""
    first = text.index("<item>")
    last = text.rindex("</item>") + len("</item>")
    body = text[first:last]
    items = ["<item>" + part for part in body.split("<item>")[1:]]
    return text[:first], items, text[last:]


def test_seen_is_forever_old_items_are_never_posted_again(tmp_path: Path) -> None:
    head, items, tail = _rss_items((FIXTURES / "feeds" / "wordpress-org-news.rss").read_text())

    def feed(chosen: list[str], build: str = "Tue, 15 Dec 2020 21:02:22 +0000") -> bytes:
        h = head.replace("Tue, 15 Dec 2020 21:02:22 +0000", build)
        return (h + "".join(chosen) + tail).encode()

    sc = Scenario(
        tmp_path,
        '[sources.blog]\nkind = "feed"\nmax_age = 0\nwebsub = false\n' + MASTODON,
    )
    sc.step("2026-11-27T08:00:00Z", "blog", feed(items[1:]), suffix=".rss")  # first poll
    sc.step("2026-11-27T09:00:00Z", "blog", feed(items), suffix=".rss")  # one new post
    sc.step(
        "2026-11-27T10:00:00Z",
        "blog",
        feed(items[:3], "Wed, 16 Dec 2020 09:00:00 +0000"),
        suffix=".rss",
    )
    # The whole feed served again (a CDN hiccup, a theme change): nothing is new.
    sc.step(
        "2026-11-27T11:00:00Z",
        "blog",
        feed(items, "Wed, 16 Dec 2020 10:00:00 +0000"),
        suffix=".rss",
    )
    events = sc.play()
    assert sent(events) == [
        ("2026-11-27T08:00:00Z", "masto", "post", "https://wordpress.org/news/?p=9325", None),
        ("2026-11-27T09:00:00Z", "masto", "post", "https://wordpress.org/news/?p=9444", None),
    ]
    assert skips(events) == []


def test_a_new_item_older_than_max_age_is_not_posted(tmp_path: Path) -> None:
    head, items, tail = _rss_items((FIXTURES / "feeds" / "wordpress-org-news.rss").read_text())
    sc = Scenario(tmp_path, '[sources.blog]\nkind = "feed"\nwebsub = false\n' + MASTODON)
    sc.step(
        "2026-11-27T08:00:00Z", "blog", (head + "".join(items[1:]) + tail).encode(), suffix=".rss"
    )
    sc.step("2026-11-27T09:00:00Z", "blog", (head + "".join(items) + tail).encode(), suffix=".rss")
    events = sc.play()
    assert sent(events) == []  # the 2020 posts are far older than the default 7 days
    assert skips(events) == [
        ("-", "https://wordpress.org/news/?p=9325", "older than the source's max_age"),
        ("-", "https://wordpress.org/news/?p=9444", "older than the source's max_age"),
    ]


def test_dates_are_read_as_written_and_titles_as_their_format_says(tmp_path: Path) -> None:
    """An RSS pubDate of `2020/1/10 14:33:00` is that date (feedparser made it 2020-11-01); one
    that cannot be read is absent, the item taking the time it was first seen. A JSON Feed
    title is plain text: `<i>` in it is shown, not eaten."""
    head, items, tail = _rss_items((FIXTURES / "feeds" / "wordpress-org-news.rss").read_text())
    loose = items[0].replace("Tue, 15 Dec 2020 13:00:00 +0000", "2020/1/10 14:33:00")
    unreadable = items[1].replace("Tue, 08 Dec 2020 19:46:00 +0000", "next Tuesday-ish")
    rss = (head + loose + unreadable + tail).encode()
    from clarion.sources.feed import parse_feed

    by_id = {n.identifier: n for n in parse_feed(rss)}
    assert (
        by_id["https://wordpress.org/news/?p=9444"].sent.isoformat() == "2020-01-10T14:33:00+00:00"
    )
    undated = by_id["https://wordpress.org/news/?p=9325"]
    assert undated.sent_estimated  # the time Clarion first saw it, never an invented date
    jf = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Kino",
        "items": [
            {
                "id": "r1",
                "title": "Die Rückkehr von <i> und <b>",
                "content_html": "<p>Ein <b>Film</b></p>",
                "date_published": "2026-11-27T08:30:00+01:00",
            }
        ],
    }
    sc = Scenario(tmp_path, '[sources.kino]\nkind = "feed"\nwebsub = false\n' + MASTODON)
    sc.step("2026-11-27T08:00:00Z", "kino", json.dumps(jf).encode())
    events = sc.play()
    assert sent(events) == [("2026-11-27T08:00:00Z", "masto", "post", "r1", None)]
    assert events[0]["text"].startswith("Die Rückkehr von <i> und <b>\n")
    assert "Ein Film" in events[0]["text"]


def test_statuspage_incident_and_component_over_time(tmp_path: Path) -> None:
    """GitHub's status summary (real): the open incident is announced once, with its current
    state; the Packages component in partial outage is a story of its own. Then the incident
    is resolved (a "monitoring" stamped the same second lands before "resolved", not after) and
    Packages is operational again: the incident ends at once, the component after `end_after`
    polls. An older update listed afterwards never reopens the incident."""
    summary = json.loads(
        (FIXTURES / "statuspage" / "githubstatus-summary-2022-11-25.json").read_text()
    )
    inc = summary["incidents"][0]
    last = max(u["display_at"] for u in inc["incident_updates"])
    base = inc["incident_updates"][0]
    later = json.loads(json.dumps(summary))
    later["incidents"][0]["incident_updates"] = [
        {
            **base,
            "id": "z-resolved",
            "status": "resolved",
            "display_at": "2022-11-25T18:00:00.000Z",
        },
        {
            **base,
            "id": "a-monitoring",
            "status": "monitoring",
            "display_at": "2022-11-25T18:00:00.000Z",
        },
        *inc["incident_updates"],
    ]
    for c in later["components"]:
        if c["status"] != "operational":
            c["status"] = "operational"
    stale = json.loads(json.dumps(later))
    stale["incidents"][0]["incident_updates"].append(
        {**base, "id": "old-identified", "status": "identified", "display_at": last}
    )
    sc = Scenario(
        tmp_path,
        '[sources.gh]\nkind = "statuspage"\nurl = "https://www.githubstatus.com/api/v2/summary.json"\n'
        "max_age = 0\nend_after = 2\n" + MASTODON,
    )
    sc.step("2022-11-25T17:00:00Z", "gh", json.dumps(summary).encode())
    sc.step("2022-11-25T18:05:00Z", "gh", json.dumps(later).encode())
    sc.step("2022-11-25T18:10:00Z", "gh", json.dumps(later).encode())  # 304
    sc.step("2022-11-25T18:20:00Z", "gh", json.dumps(stale).encode())
    events = sc.play()
    newest = max(inc["incident_updates"], key=lambda u: u["display_at"])["id"]
    assert sent(events) == [
        ("2022-11-25T17:00:00Z", "masto", "post", newest, None),
        ("2022-11-25T17:00:00Z", "masto", "post", "component:st3j38cctv9l", None),
        ("2022-11-25T18:05:00Z", "masto", "reply", "z-resolved", newest),
        (
            "2022-11-25T18:10:00Z",
            "masto",
            "reply",
            "component:st3j38cctv9l#ended",
            "component:st3j38cctv9l",
        ),
    ]
    texts = [e["text"] for e in events if e["action"] != "skip"]
    assert not texts[0].startswith("UPDATE")  # the first post says what is, not "update of"
    assert texts[2].startswith("RESOLVED:")
    assert [s for s in skips(events) if s[0] == "-"] == [
        ("-", "old-identified", "late: a newer message already replaced it")
    ]


def test_the_page_and_the_api_show_a_storys_live_branches(store: Store) -> None:
    """Both segments in effect: the notice page lists both parts with "in effect until"; the
    API names them in `live_versions`. Once one is cancelled, only the other is live."""
    from datetime import UTC, datetime

    from fastapi.testclient import TestClient

    from clarion.pipeline import ingest
    from clarion.sources.nws import parse_nws
    from clarion.web.app import create_app
    from tests.helpers import channels_for, config

    cfg = config()
    chans = channels_for(cfg)
    p, s2, s3 = _segments()
    # The page judges "in effect" by the real clock: the segments' event ends in 2030 here.
    s2, s3 = (derive(s, ends="2030-01-01T00:00:00+00:00") for s in (s2, s3))
    cancel2 = derive(
        s2,
        id=s2["properties"]["id"][:-1] + "2",
        messageType="Cancel",
        sent="2026-11-27T08:30:00+00:00",
        references=[ref(s2)],
    )
    now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    for batch in ((p,), (s2, s3)):
        ingest(store, cfg, chans, parse_nws(collection(*batch)), source="nws", now=now)
    with TestClient(create_app(store, cfg)) as client:
        page = client.get("/notices/1").text
        assert "In effect now: 2 parts" in page
        assert page.count("in effect until <time") == 2
        assert "West Slopes North Central Cascades" in page.split("In effect now")[1]
        api = client.get("/api/v1/notices/1").json()
        assert api["live_versions"] == [2, 3]
        assert [v["branch"] for v in api["versions"]] == ["replaced", "live", "live"]
        assert api["versions"][1]["in_effect_until"].startswith("2030-01-01T00:00:00")
        ingest(store, cfg, chans, parse_nws(collection(cancel2, s3)), source="nws", now=now)
        api = client.get("/api/v1/notices/1").json()
        assert api["live_versions"] == [3] and api["state"] == "active"
        assert "In effect now" not in client.get("/notices/1").text  # one part: no list


def test_rehearsal_names_each_events_story_and_why_anything_was_not_posted(
    tmp_path: Path,
) -> None:
    """`clarion rehearse --json` gave `"thread": null` on every event, and a Test message was
    dropped without a word. Every event now carries its story's key (a reply: the same key as
    what it answers), and a message no channel takes says why."""
    p, s2, _ = _segments()
    drill = derive(p, id=p["properties"]["id"] + ".test", status="Test")
    sc = Scenario(tmp_path, NWS + MASTODON)
    sc.step("2026-11-27T07:00:00Z", "nws", collection(p))
    sc.step("2026-11-27T08:00:00Z", "nws", collection(s2, drill))
    events = sc.play()
    posted = [e for e in events if e["action"] != "skip"]
    assert [e["action"] for e in posted] == ["post", "reply"]
    assert all(e["thread"] for e in posted)
    assert posted[0]["thread"] == posted[1]["thread"]  # the segment continues the warning
    assert posted[0]["thread"].startswith("nws/")
    [why] = [e["reason"] for e in events if e["identifier"] == drill["properties"]["id"]]
    assert why == "test: no channel takes it"


def test_a_status_groups_outage_is_posted_named_and_ended(tmp_path: Path) -> None:
    """Linode's real component list (2021-12-17): its group "Regions" is in partial outage
    with eight regions, but Statuspage never bumps a group's own `updated_at` (2018), so the
    group's outage was dropped as older than `max_age`. A group's state and time now come
    from its components; a component is named with its group ("Regions › US-East
    (Newark)"); once all are operational again, every story ends under its post."""
    problems = json.loads((FIXTURES / "statuspage" / "linode-components-problems.json").read_text())
    fixed = json.loads(json.dumps(problems))
    for c in fixed["components"]:
        c["status"] = "operational"
    sc = Scenario(
        tmp_path,
        '[sources.linode]\nkind = "statuspage"\n'
        'url = "https://status.linode.com/api/v2/components.json"\nend_after = 2\n' + MASTODON,
    )
    sc.step("2021-12-17T23:00:00Z", "linode", json.dumps(problems).encode())
    sc.step("2021-12-18T01:00:00Z", "linode", json.dumps(fixed).encode())
    sc.step("2021-12-18T01:05:00Z", "linode", json.dumps(fixed).encode())
    events = sc.play()
    posts = {e["identifier"]: e for e in events if e["action"] == "post"}
    assert "component:kb0cf2d0rryb" in posts  # the group, judged by its regions' time
    texts = [e["text"] for e in posts.values()]
    assert any(t.startswith("Regions › US-East (Newark): partial outage") for t in texts), texts
    ends = {e["identifier"] for e in events if e["action"] == "reply"}
    assert ends == {f"{ident}#ended" for ident in posts}  # every outage declared over
    assert not [e for e in events if e["action"] == "skip"]
