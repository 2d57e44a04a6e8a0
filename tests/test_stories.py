"""How a story lives, over time, on real feeds: scenarios played with `clarion rehearse`.

One test per class of defect found when Clarion met real captures (issue "Every real alert
posted, exactly its lifecycle"). Each asserts exactly what each channel receives and skips.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.scenarios import Scenario, collection, derive, feature, ref, sent, skips, tail_of

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
