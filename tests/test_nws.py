"""api.weather.gov alerts: real fixtures, golden files, threading with CAP, and ending."""

from __future__ import annotations

import json

import pytest

from clarion.model import MsgType, Severity, Status
from clarion.sources.base import SourceError
from clarion.sources.nws import parse_nws
from clarion.store import Store
from tests.conftest import fixture_bytes
from tests.golden import check_golden, notice_record
from tests.nws_dates import CLOCK, resolve

FILES = [
    "load-testing-ioc_alerts_active.json",
    "testing_alerts_active.json",
    "e2e_alerts_active.json",
]


@pytest.mark.parametrize("name", FILES)
def test_golden(name: str) -> None:
    notices = parse_nws(resolve(fixture_bytes(f"nws-api/{name}")), what=name)
    check_golden(f"nws-api/{name}", [notice_record(n) for n in notices])


def test_raw_tokens_are_a_clear_error_not_an_invented_date() -> None:
    with pytest.raises(SourceError, match="invalid timestamp"):
        parse_nws(fixture_bytes("nws-api/testing_alerts_active.json"))


def test_fields_of_an_update() -> None:
    notices = parse_nws(resolve(fixture_bytes("nws-api/testing_alerts_active.json")))
    raw = json.loads(fixture_bytes("nws-api/testing_alerts_active.json"))["features"]
    assert len(notices) == len({f["properties"]["id"] for f in raw}) == 37  # one id repeats
    n = next(n for n in notices if n.identifier.startswith("urn:oid:2.49.0.1.840.0.21973bd4"))
    assert n.msg_type is MsgType.UPDATE and n.status is Status.ACTUAL
    assert n.severity is Severity.MODERATE
    info = n.infos[0]
    assert info.event == "Wind Advisory"  # the first of two features with this id wins
    assert info.areas[0].description.startswith("Stewart; Montgomery; Robertson")
    assert [(g.name, g.value) for g in info.areas[0].geocodes] == [("SAME", "001073")]
    params = {(p.name, p.value) for p in info.parameters}
    assert ("VTEC", "/O.CON.KOHX.WI.Y.0001.240109T0000Z-240110T0600Z/") in params
    assert (
        "NWSheadline",
        "WIND ADVISORY REMAINS IN EFFECT FROM 6 PM THIS EVENING TO MIDNIGHT CST TUESDAY NIGHT",
    ) in params
    assert len(n.references) == 3
    # The thread is the oldest referenced message, in the same form as CAP's.
    assert n.thread_key == (
        "cap:w-nws.webmaster@noaa.gov,"
        "urn:oid:2.49.0.1.840.0.3f75dc0fcc5146ce6b90b8cda2e8c565c7f4e2ad.001.1"
    )
    assert info.expires is not None and info.expires > CLOCK


def test_polygon_is_lat_lon() -> None:
    notices = parse_nws(resolve(fixture_bytes("nws-api/load-testing-ioc_alerts_active.json")))
    ring = next(a.polygons[0] for n in notices for a in n.infos[0].areas if a.polygons)
    lat, lon = ring[0]
    assert (lat, lon) == (45.25, -93.0)  # GeoJSON wrote [-93, 45.25]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>503</html>", "not valid JSON"),
        (b'{"type": "Feature"}', "not a GeoJSON FeatureCollection"),
        (b'{"type": "FeatureCollection", "features": [{"properties": {}}]}', "lacks an id"),
        (b'{"type": "FeatureCollection", "features": 3}', "no 'features' list"),
    ],
)
def test_bad_input(body: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_nws(body)


def test_expired_references_join_the_thread() -> None:
    data = json.loads(resolve(fixture_bytes("nws-api/load-testing-ioc_alerts_active.json")))
    feature = data["features"][0]
    feature["properties"]["references"] = []
    feature["properties"]["parameters"]["expiredReferences"] = [
        "w-nws.webmaster@noaa.gov,urn:oid:2.49.0.1.840.0.old1.001.1,2026-01-01T00:00:00-06:00 "
        "w-nws.webmaster@noaa.gov,urn:oid:2.49.0.1.840.0.old0.001.1,2025-12-31T00:00:00-06:00"
    ]
    data["features"] = [feature]
    [n] = parse_nws(json.dumps(data).encode())
    assert [r.identifier for r in n.references] == [
        "urn:oid:2.49.0.1.840.0.old1.001.1",
        "urn:oid:2.49.0.1.840.0.old0.001.1",
    ]
    assert n.thread_key == "cap:w-nws.webmaster@noaa.gov,urn:oid:2.49.0.1.840.0.old0.001.1"


def test_one_alerts_nul_spoils_no_other(store: Store) -> None:
    """The NWS API lists every active alert in one document: one alert's NUL (`\\u0000`,
    which no PostgreSQL text holds) refused the whole document, and every alert of the poll
    went unposted. It reads as U+FFFD; every alert is parsed and stored (both databases).
    A push holding a NUL is still refused, so that its sender hears why."""
    from clarion.channels import build_channels
    from clarion.pipeline import ingest
    from clarion.safejson import JSONRefused, loads
    from tests.helpers import config

    data = json.loads(resolve(fixture_bytes("nws-api/testing_alerts_active.json")))
    whole = len(parse_nws(json.dumps(data).encode()))
    first = data["features"][0]["properties"]
    first["description"] = "Flooding\u0000 expected"
    first["headline"] = "\u0000" + first["headline"]
    body = json.dumps(data).encode()
    assert b"\\u0000" in body
    poll = parse_nws(body)
    assert len(poll) == whole >= 2
    assert "Flooding\ufffd expected" in [i.description for n in poll for i in n.infos]
    cfg = config()
    assert len(ingest(store, cfg, build_channels(cfg), poll, source="nws").stored) == whole
    with pytest.raises(JSONRefused, match="NUL"):
        loads(body)


def test_one_alerts_number_out_of_range_spoils_no_other(store: Store) -> None:
    """`1e999` is a JSON number (JSON sets no range), and no float: one alert's coordinate
    written so refused the whole NWS document, every alert of the poll unposted. It reads as
    infinity, which no place is: that alert's polygon is left out (as an impossible ring
    already was) and every alert is parsed and stored (both databases). A push holding one is
    still refused, so that its sender hears why."""
    from clarion.channels import build_channels
    from clarion.pipeline import ingest
    from clarion.safejson import JSONRefused, loads
    from tests.helpers import config

    data = json.loads(resolve(fixture_bytes("nws-api/testing_alerts_active.json")))
    whole = parse_nws(json.dumps(data).encode())
    placed = next(f for f in data["features"] if f["geometry"])
    ring = placed["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1]  # a closed ring: its first point is written twice
    text = json.dumps(data)
    first = json.dumps(ring[0])  # e.g. [-92, 30]
    assert text.count(first) >= 1
    body = text.replace(first, "[1e999, 30]", 1).encode()
    with pytest.raises(JSONRefused, match="out of range"):
        loads(body)
    poll = parse_nws(body)
    assert [n.identifier for n in poll] == [n.identifier for n in whole]
    hit = next(n for n in poll if n.identifier == placed["properties"]["id"])
    assert all(not a.polygons for i in hit.infos for a in i.areas)
    cfg = config()
    assert len(ingest(store, cfg, build_channels(cfg), poll, source="nws").stored) == len(whole)
