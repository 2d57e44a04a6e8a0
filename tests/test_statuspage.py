"""Atlassian Statuspage v2: one thread per incident, every update a version, resolved ends it."""

from __future__ import annotations

import json

import pytest

from clarion.model import MsgType, Notice, Severity
from clarion.sources.base import Rejected, SourceError
from clarion.sources.statuspage import parse_statuspage
from tests.conftest import fixture_bytes
from tests.golden import check_golden, notice_record

SUMMARY = "statuspage/githubstatus-summary-2022-11-25.json"


def test_golden() -> None:
    check_golden(SUMMARY, [notice_record(n) for n in parse_statuspage(fixture_bytes(SUMMARY))])


def incidents(notices: list[Notice]) -> list[Notice]:
    return [n for n in notices if not n.identifier.startswith("component:")]


def test_incident_updates_are_versions_of_one_thread() -> None:
    notices = incidents(parse_statuspage(fixture_bytes(SUMMARY)))
    assert len(notices) == 7
    assert {n.thread_key for n in notices} == {"local:statuspage:ljwdk6qml8z8"}
    assert [n.msg_type for n in notices] == [MsgType.ALERT] + [MsgType.UPDATE] * 6
    assert [n.sent for n in notices] == sorted(n.sent for n in notices)
    first = notices[0]
    assert first.headline == "Incident with Packages and Pages"
    assert first.infos[0].description == (
        "We are investigating reports of degraded performance for Packages."
    )
    assert first.severity is Severity.MODERATE  # impact "major"
    assert first.sender == "GitHub" and first.link == "https://stspg.io/33vh8r7z43kh"
    assert {e.name for e in first.entities} == {"Packages", "Pages"}


def test_resolved_ends_the_thread() -> None:
    data = json.loads(fixture_bytes(SUMMARY))
    inc = data["incidents"][0]
    inc["incident_updates"].insert(
        0,
        {
            **inc["incident_updates"][0],
            "id": "resolved1",
            "status": "resolved",
            "body": "This incident has been resolved.",
            "created_at": "2022-11-25T16:30:00.000Z",
            "display_at": "2022-11-25T16:30:00.000Z",
        },
    )
    notices = incidents(parse_statuspage(json.dumps(data).encode()))
    assert notices[-1].identifier == "resolved1" and notices[-1].msg_type is MsgType.END


@pytest.mark.parametrize(
    ("name_or_body", "message"),
    [
        (b'{"page": {"name": "x"}, "status": {}}', "no incidents, scheduled_maintenances or"),
        (b"<html>", "not valid JSON"),
        (b'{"incidents": []}', "no 'page'"),
    ],
)
def test_bad_input(name_or_body: str | bytes, message: str) -> None:
    body = fixture_bytes(name_or_body) if isinstance(name_or_body, str) else name_or_body
    with pytest.raises(SourceError, match=message):
        parse_statuspage(body)


def test_scheduled_maintenance_is_a_thread_that_completes() -> None:
    data = json.loads(fixture_bytes(SUMMARY))
    inc = data["incidents"].pop()
    inc["id"], inc["impact"] = "maint1", "maintenance"
    updates = inc["incident_updates"][-2:]
    updates[0] = {**updates[0], "id": "m-done", "status": "completed", "body": "Done."}
    updates[1] = {**updates[1], "id": "m-start", "status": "scheduled", "body": "Planned."}
    inc["incident_updates"] = updates
    data["scheduled_maintenances"] = [inc]
    notices = incidents(parse_statuspage(json.dumps(data).encode()))
    assert [(n.identifier, n.msg_type) for n in notices] == [
        ("m-start", MsgType.ALERT),
        ("m-done", MsgType.END),
    ]
    assert notices[0].thread_key == "local:statuspage:maint1"
    assert notices[0].severity is Severity.MINOR


def test_updates_with_the_same_time_are_ordered_by_progress_then_id() -> None:
    """Two updates stamped with the same second: "monitoring" never lands after "resolved"."""
    data = json.loads(fixture_bytes(SUMMARY))
    inc = data["incidents"][0]
    last = max(u["display_at"] for u in inc["incident_updates"])
    base = inc["incident_updates"][0]
    inc["incident_updates"] = [
        {**base, "id": "z-resolved", "status": "resolved", "display_at": last},
        {**base, "id": "a-monitoring", "status": "monitoring", "display_at": last},
        *inc["incident_updates"],
    ]
    notices = incidents(parse_statuspage(json.dumps(data).encode()))
    assert [n.identifier for n in notices[-2:]] == ["a-monitoring", "z-resolved"]
    assert notices[-1].msg_type is MsgType.END


def test_components_not_operational_are_stories() -> None:
    """components.json (Linode, real): each component or group not `operational` is a live
    notice of its own story; operational ones are not listed (their stories end by absence)."""
    notices = parse_statuspage(fixture_bytes("statuspage/linode-components-problems.json"))
    assert len(notices) == 8
    regions = next(n for n in notices if n.headline == "Regions: partial outage")
    assert regions.identifier == "component:kb0cf2d0rryb"  # a group
    assert regions.thread_key == "local:statuspage-component:kb0cf2d0rryb"
    assert regions.severity is Severity.MODERATE
    assert regions.entities[0].name == "Regions"
    summary = parse_statuspage(fixture_bytes(SUMMARY))
    packages = [n for n in summary if n.identifier.startswith("component:")]
    assert [n.headline for n in packages] == ["Packages: partial outage"]


def test_one_bad_incident_is_rejected_and_the_rest_read() -> None:
    data = json.loads(fixture_bytes(SUMMARY))
    data["incidents"].insert(0, {"id": "bad1", "name": "Broken", "incident_updates": "nope"})
    with pytest.raises(SourceError, match="no incident_updates list"):
        parse_statuspage(json.dumps(data).encode())
    rejected: list[Rejected] = []
    notices = parse_statuspage(json.dumps(data).encode(), rejected=rejected)
    assert len(incidents(notices)) == 7
    assert [(r.item, r.reason) for r in rejected] == [("incident bad1", "malformed")]


@pytest.mark.parametrize(
    ("url", "active"),
    [
        ("https://www.githubstatus.com/api/v2/summary.json", True),
        ("https://www.githubstatus.com/api/v2/summary.json?cache=no", True),
        ("https://status.example.com/api/v2/components", True),
        ("https://status.example.com/api/v2/incidents/unresolved.json/", True),
        ("https://status.example.com/api/v2/incidents.json", False),
        ("https://status.example.com/api/v2/scheduled-maintenances.json", False),
    ],
)
def test_a_listing_of_what_is_open_is_known_by_its_path(url: str, active: bool) -> None:
    """Only a listing of what is open ends a story by leaving it: known by the URL's path, so
    a query string or a missing `.json` no longer made an outage that ends never end."""
    from clarion.sources.statuspage import StatuspageSource

    assert StatuspageSource("s", url, 1 << 20).lists_active is active
