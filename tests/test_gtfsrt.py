"""GTFS-realtime Service Alerts: protobuf and JSON, translations, entities, Mercury edits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf import text_format
from google.transit import gtfs_realtime_pb2 as rt

from clarion.model import Severity
from clarion.sources.base import SourceError
from clarion.sources.gtfsrt import parse_gtfsrt
from clarion.store import Store
from tests.conftest import fixture_bytes
from tests.golden import check_golden, notice_record


def spec_example() -> rt.FeedMessage:
    text = fixture_bytes("gtfsrt/spec_example_alerts.asciipb").decode()
    return text_format.Parse(text, rt.FeedMessage())


@pytest.mark.parametrize(
    "name",
    [
        "bart-alerts.pb",
        "bart-alerts.json",
        "caltrain-service-alerts.pb",
        "caltrain-service-alerts.json",
    ],
)
def test_golden(name: str) -> None:
    notices = parse_gtfsrt(fixture_bytes(f"gtfsrt/{name}"))
    check_golden(f"gtfsrt/{name}", [notice_record(n) for n in notices])


def test_protobuf_and_json_forms_agree() -> None:
    pb = parse_gtfsrt(fixture_bytes("gtfsrt/bart-alerts.pb"))
    js = parse_gtfsrt(fixture_bytes("gtfsrt/bart-alerts.json"), "application/json")
    assert [n.content_hash() for n in pb] == [n.content_hash() for n in js]
    [n] = pb
    assert n.identifier == "BSA_187874" and n.sender == "BART"
    assert n.infos[0].event == "Significant delays"
    assert ("cause", "Medical emergency") in [(p.name, p.value) for p in n.infos[0].parameters]
    assert n.infos[0].headline.startswith("There is a major delay at Montgomery St.")
    assert n.link == "http://www.bart.gov/schedules/advisories"
    assert n.sent_estimated  # no edit stamp: the time read is not part of the content


def test_empty_feed_is_not_an_error() -> None:
    assert parse_gtfsrt(fixture_bytes("gtfsrt/caltrain-service-alerts.pb")) == []


def test_spec_example_entities_and_periods() -> None:
    [n] = parse_gtfsrt(spec_example().SerializeToString())
    assert {(e.kind, e.id) for e in n.entities} == {
        ("route", "219"),
        ("stop", "16230"),
        ("route", "100"),
        ("stop", "16299"),
    }
    info = n.infos[0]
    assert info.effective == datetime.fromtimestamp(1284457468, UTC)
    assert info.expires == datetime.fromtimestamp(1284468072, UTC)
    assert info.event == "Detour"
    assert info.description.startswith("Due to construction at Elm street")


def test_translations_prefer_plain_text_over_html() -> None:
    feed = spec_example()
    alert = feed.entity[0].alert
    alert.header_text.translation.add(text="<p>Arrêt <b>fermé</b></p>", language="fr-html")
    alert.header_text.translation.add(text="<p>IGNORED</p>", language="en-html")
    alert.severity_level = rt.Alert.SEVERE
    [n] = parse_gtfsrt(feed.SerializeToString())
    assert [i.language for i in n.infos] == ["en", "fr"]
    assert n.info(("fr",)).headline == "Arrêt fermé"
    assert n.info(("en",)).headline == "Stop at Elm street is closed, temporary stop at Oak street"
    assert n.severity is Severity.SEVERE


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mercury(updated_at: int) -> bytes:
    """Alert field 1001 (MercuryAlert) holding created_at (1) and updated_at (2), hand-encoded
    from the MTA's published .proto, since no MTA schema is compiled into Clarion or its tests."""
    inner = b"\x08" + _varint(1_600_000_000) + b"\x10" + _varint(updated_at)
    return _varint((1001 << 3) | 2) + _varint(len(inner)) + inner


def test_mercury_updated_at_marks_edits() -> None:
    feed = spec_example()
    entity = feed.entity[0]
    entity.alert.MergeFromString(mercury(1_700_000_000))
    [n] = parse_gtfsrt(feed.SerializeToString())
    assert n.sent == datetime.fromtimestamp(1_700_000_000, UTC) and not n.sent_estimated
    feed2 = spec_example()
    feed2.entity[0].alert.MergeFromString(mercury(1_700_000_600))
    [n2] = parse_gtfsrt(feed2.SerializeToString())
    assert n2.content_hash() != n.content_hash()  # same text, new edit stamp: an edit


def test_fetch_time_alone_is_not_an_edit() -> None:
    feed = spec_example()
    first = parse_gtfsrt(feed.SerializeToString())[0]
    feed.header.timestamp += 60
    later = parse_gtfsrt(feed.SerializeToString())[0]
    assert first.sent != later.sent and first.content_hash() == later.content_hash()


@pytest.mark.parametrize(
    ("body", "ctype", "message"),
    [
        (b"\x0a\xff\xff\xff", "application/x-protobuf", "not a GTFS-realtime"),
        (b"<html>error</html>", "text/html", "not a GTFS-realtime"),
        (b'{"header": 5}', "application/json", "not a GTFS-realtime JSON feed"),
        (b"", "application/x-protobuf", "no header"),
    ],
)
def test_garbage(body: bytes, ctype: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_gtfsrt(body, ctype)


@pytest.mark.parametrize("name", ["fuzz-invalid-utf8.pb", "fuzz-missing-required.pb"])
def test_inputs_found_by_fuzzing_parse_or_fail_clearly(name: str) -> None:
    """Once crashed the parser (atheris found them: fuzz/fuzz_parsers.py)."""
    body = fixture_bytes(f"gtfsrt/{name}")
    try:
        notices = parse_gtfsrt(body, "application/x-protobuf")
    except SourceError as exc:
        assert str(exc)
        return
    assert notices and all(isinstance(n.identifier, str) for n in notices)
    for n in notices:
        for info in n.infos:
            assert isinstance(info.headline or "", str)


def test_a_nul_in_one_alert_spoils_no_poll(store: Store) -> None:
    """A protobuf string may hold NUL, which PostgreSQL text cannot: one alert's NUL made the
    whole feed's poll fail there, every other alert of the agency unposted with it. It reads
    as U+FFFD; every alert is stored (on both databases)."""
    from clarion.channels import build_channels
    from clarion.pipeline import ingest
    from tests.helpers import config

    feed = rt.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.timestamp = 1764979200
    for i, title in enumerate(["Detour\x00 on 5", "Elevator out"]):
        entity = feed.entity.add()
        entity.id = f"e{i}\x00"
        entity.alert.header_text.translation.add(text=title, language="en")
        entity.alert.description_text.translation.add(text="Use\x00 stop 7", language="en")
        entity.alert.informed_entity.add(route_id="5\x00")
    poll = parse_gtfsrt(feed.SerializeToString())
    assert [n.headline for n in poll] == ["Detour\ufffd on 5", "Elevator out"]
    assert poll[0].identifier == "e0\ufffd" and poll[0].entities[0].id == "5\ufffd"
    cfg = config()
    assert len(ingest(store, cfg, build_channels(cfg), poll, source="gtfs").stored) == 2


def test_half_an_emoji_in_the_json_form_spoils_no_feed() -> None:
    """A lone surrogate (`\\ud83d`: half an emoji, cut by a producer counting UTF-16 units)
    in one alert of the JSON form made protobuf refuse the whole feed, every alert of the
    agency unposted with it. It reads as U+FFFD, as in the other JSON sources; the other
    alert is read unchanged. So does an escaped NUL."""
    body = (
        b'{"header": {"gtfsRealtimeVersion": "2.0", "timestamp": "1764979200"}, "entity": ['
        b'{"id": "a1", "alert": {"headerText": {"translation": [{"text": "Detour \\ud83d on 5",'
        b' "language": "en"}]}, "informedEntity": [{"routeId": "5\\u0000"}]}},'
        b'{"id": "a2", "alert": {"headerText": {"translation": [{"text":'
        b' "Elevator out \\ud83d\\ude80", "language": "en"}]}}}]}'
    )
    poll = parse_gtfsrt(body, "application/json")
    assert [n.headline for n in poll] == ["Detour \ufffd on 5", "Elevator out \U0001f680"]
    assert poll[0].entities[0].id == "5\ufffd"


def test_one_entity_of_the_wrong_shape_in_the_json_form_is_rejected_alone() -> None:
    """Protobuf reads a JSON document whole or not at all: one entity with a value of the
    wrong type (a string as an active period) refused the whole feed, every alert of the
    agency unposted with it. It is now that entity's rejection, named by its id."""
    from clarion.sources.base import Rejected

    body = (
        b'{"header": {"gtfsRealtimeVersion": "2.0", "timestamp": "1764979200"}, "entity": ['
        b'{"id": "odd", "alert": {"activePeriod": "tomorrow", "headerText": {"translation":'
        b' [{"text": "Detour on 5", "language": "en"}]}}},'
        b'{"id": "fine", "alert": {"headerText": {"translation": [{"text": "Elevator out",'
        b' "language": "en"}]}}}]}'
    )
    rejected: list[Rejected] = []
    poll = parse_gtfsrt(body, "application/json", rejected=rejected)
    assert [n.headline for n in poll] == ["Elevator out"]
    [why] = rejected
    assert why.item == "odd" and "entity 1" in why.detail
    with pytest.raises(SourceError, match="entity 1"):
        parse_gtfsrt(body, "application/json")
