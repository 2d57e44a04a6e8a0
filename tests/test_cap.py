"""CAP parsing: every real fixture to its expected notices, or to its expected clear error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clarion.model import Certainty, MsgType, Severity, SignatureState, Status, Urgency
from clarion.sources.base import SourceError
from clarion.sources.cap import parse_cap, parse_index
from tests.conftest import FIXTURES, fixture_bytes
from tests.golden import check_golden, notice_record

VALID = [
    "amber.atom",
    "canada.cap",
    "canada_signed.cap",
    "earthquake-iso8859-1.cap",
    "earthquake.cap",
    "empty_weather_index.atom",
    "no_entries.atom",
    "no_info_tag.cap",
    "no_optional_fields.cap",
    "nws_multiple_polygons.cap",
    "wcatwc-warning.cap",
    "weather.cap",
    "weather_index.atom",
    "nws_atom_feed_example.xml",
    "invalid.rss",
]
INVALID = {
    "invalid.cap": "required element <scope> is missing",
    "canada_errors.cap": "must name what it refers to in <references> (it is present but empty)",
    # An Alert: its empty <references> names nothing (read as none); its empty urgency is
    # required, and refused.
    "noaa_errors.cap": "required element <urgency> is missing or empty",
    "xee.cap": "declares a DOCTYPE",
    "xee.atom": "declares a DOCTYPE",
}


def test_every_cap_fixture_is_covered() -> None:
    on_disk = {p.name for p in (FIXTURES / "cap").iterdir() if p.suffix not in (".pem", ".xsd")}
    assert on_disk == set(VALID) | set(INVALID)


@pytest.mark.parametrize("name", VALID)
def test_golden(name: str) -> None:
    notices = parse_cap(fixture_bytes(f"cap/{name}"), what=name)
    check_golden(f"cap/{name}", [notice_record(n) for n in notices])


@pytest.mark.parametrize(("name", "message"), INVALID.items())
def test_invalid_documents_give_one_clear_error(name: str, message: str) -> None:
    with pytest.raises(SourceError) as err:
        parse_cap(fixture_bytes(f"cap/{name}"), what=name)
    assert message in str(err.value)
    assert str(err.value).startswith(name)  # names the source of the problem


def test_weather_cap_fields() -> None:
    [n] = parse_cap(fixture_bytes("cap/weather.cap"))
    assert n.identifier == "NOAA-NWS-ALERTS-MT20100830100700TFXFlashFloodWatchTFX20100830180000MT"
    assert n.sender == "w-nws.webmaster@noaa.gov"
    assert n.sent == datetime(2010, 8, 30, 10, 7, tzinfo=UTC)
    assert (n.status, n.msg_type, n.scope) == (Status.ACTUAL, MsgType.ALERT, "public")
    info = n.infos[0]
    assert info.event == "Flash Flood Watch"
    assert (info.urgency, info.severity, info.certainty) == (
        Urgency.EXPECTED,
        Severity.SEVERE,
        Certainty.POSSIBLE,
    )
    assert info.expires == datetime(2010, 8, 30, 18, 0, tzinfo=UTC)
    assert [(g.name, g.value) for g in info.areas[0].geocodes] == [
        ("FIPS6", "030049"),
        ("UGC", "MTZ014"),
    ]
    assert ("SAME", "FFA") in [(c.name, c.value) for c in info.event_codes]
    assert n.thread_key == f"cap:{n.sender},{n.identifier}"
    assert n.original == fixture_bytes("cap/weather.cap")  # kept byte for byte


def test_bilingual_update_keeps_every_info_and_references() -> None:
    [n] = parse_cap(fixture_bytes("cap/canada.cap"))
    assert [i.language for i in n.infos] == ["en-CA", "fr-CA"]
    assert n.info(("fr",)).event == "orages"
    assert n.info(("en",)).event == "thunderstorm"
    assert [r.identifier for r in n.references] == [
        "2.49.0.1.124.a3f342a4.2012",
        "2.49.0.1.124.60f31a3a.2012",
    ]
    # The thread is the oldest message referred to.
    assert n.thread_key == "cap:cap@ec.gc.ca,2.49.0.1.124.a3f342a4.2012"
    assert sum(len(a.polygons) for a in n.infos[0].areas) == 2
    assert n.infos[1].areas[0].description == "Windsor - Leamington - comté d'Essex"
    # Empty optional elements (<note/>, <incidents/>) are absent, not empty strings.
    assert n.note is None and n.incidents == []


def test_two_polygons_in_one_area() -> None:
    [n] = parse_cap(fixture_bytes("cap/nws_multiple_polygons.cap"))
    area = n.infos[0].areas[0]
    assert area.description == "Acadia"
    assert len(area.polygons) == 2
    assert all(ring[0] == ring[-1] for ring in area.polygons)  # CAP polygons are closed
    assert len(n.references) == 8
    assert n.severity is Severity.EXTREME


def test_iso_8859_1_and_circle() -> None:
    [n] = parse_cap(fixture_bytes("cap/earthquake-iso8859-1.cap"))
    text = n.infos[0].model_dump_json()
    assert "Usulután" in text
    circle = n.infos[0].areas[0].circles[0]
    assert (circle.lat, circle.lon, circle.radius_km) == (12.747, -88.783, 0.0)
    assert n.signature is SignatureState.UNCHECKED  # signed; verification is per trusted certs


def test_cancel_without_info() -> None:
    [n] = parse_cap(fixture_bytes("cap/no_info_tag.cap"))
    assert n.msg_type is MsgType.CANCEL
    assert n.infos == []
    assert n.thread_key == "cap:AtHoc,1017033100951096-517189320160225203219800"


def test_index_lists_linked_documents() -> None:
    entries = parse_index(fixture_bytes("cap/weather_index.atom"))
    assert len(entries) == 2
    assert all(e.url and e.url.startswith("http://www.weather.gov/alerts-beta/") for e in entries)
    assert all(e.embedded is None for e in entries)
    big = parse_index(fixture_bytes("cap/nws_atom_feed_example.xml"))
    assert len(big) == 163
    assert len({e.id for e in big}) == 163


def test_foreign_alert_outside_entries_is_not_an_entry() -> None:
    # no_entries.atom carries a CAP alert directly under <feed>: foreign markup, not an entry.
    assert parse_index(fixture_bytes("cap/no_entries.atom")) == []


@pytest.mark.parametrize("cut", [10, 100, 500, 1000])
def test_truncated_documents_are_clear_errors(cut: int) -> None:
    body = fixture_bytes("cap/weather.cap")[:cut]
    with pytest.raises(SourceError, match=r"not well-formed|not XML"):
        parse_cap(body)


def test_html_error_page_is_named() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    with pytest.raises(SourceError, match="HTML page"):
        parse_cap(page)


def test_size_cap() -> None:
    with pytest.raises(SourceError, match="over the"):
        parse_cap(b"<alert>" + b" " * (6 * 1024 * 1024) + b"</alert>")


def test_z_offset_accepted_naive_refused() -> None:
    body = fixture_bytes("cap/weather.cap")
    [n] = parse_cap(
        body.replace(b"2010-08-30T04:07:00-06:00</sent>", b"2010-08-30T10:07:00Z</sent>")
    )
    assert n.sent == datetime(2010, 8, 30, 10, 7, tzinfo=UTC)
    with pytest.raises(SourceError, match="has no UTC offset"):
        parse_cap(body.replace(b"2010-08-30T04:07:00-06:00</sent>", b"2010-08-30T10:07:00</sent>"))


def test_unknown_enumeration_value_is_named() -> None:
    body = fixture_bytes("cap/weather.cap").replace(b"<severity>Severe", b"<severity>Apocalyptic")
    with pytest.raises(SourceError, match=r"<severity> is 'Apocalyptic'; CAP allows"):
        parse_cap(body)


def test_resources_are_kept_with_their_descriptions() -> None:
    [n] = parse_cap(fixture_bytes("cap/wcatwc-warning.cap"))
    resources = n.infos[0].resources
    assert [(r.description, r.mime_type) for r in resources] == [
        ("Energy Map", "image/jpeg"),
        ("Tsunami Travel Time Map", "image/jpeg"),
        ("Event Data as a JSON document", "application/json"),
    ]
    assert resources[0].uri.endswith("energylqw6d6-02.jpg")


@pytest.mark.parametrize(
    "empty", ["<references/>", "<references></references>", "<references> </references>"]
)
def test_an_alert_with_an_empty_references_element_is_an_alert(empty: str) -> None:
    """An empty optional element is no reference at all (valid CAP 1.2: `references` is
    optional, and an empty one names nothing), so a new alert carrying one is read; an Update
    or Cancel naming nothing is still refused, since what it changes would be a guess."""
    body = fixture_bytes("cap/weather.cap").replace(b"<scope>", empty.encode() + b"<scope>", 1)
    [notice] = parse_cap(body, what="empty")
    assert notice.msg_type.value == "alert" and notice.references == []
    update = body.replace(b"<msgType>Alert</msgType>", b"<msgType>Update</msgType>")
    with pytest.raises(SourceError, match="must name what it refers to"):
        parse_cap(update, what="empty")


def test_a_cap_1_1_resource_without_a_mime_type_is_read_and_1_2_still_requires_one() -> None:
    """`<mimeType>` is required from CAP 1.2 only; 1.0 and 1.1 documents without it were
    refused. Its type is then taken from the URI (images are checked by their bytes anyway)."""
    body = fixture_bytes("cap/wcatwc-warning.cap")
    assert b"urn:oasis:names:tc:emergency:cap:1.2" in body
    v11 = body.replace(b"cap:1.2", b"cap:1.1").replace(b"<mimeType>image/jpeg</mimeType>", b"")
    [notice] = parse_cap(v11, what="1.1")
    mimes = [r.mime_type for r in notice.infos[0].resources]
    assert mimes[:2] == ["image/jpeg", "image/jpeg"]
    with pytest.raises(SourceError, match="required element <mimeType>"):
        parse_cap(body.replace(b"<mimeType>image/jpeg</mimeType>", b""), what="1.2")


def test_html_in_a_cap_text_field_is_plain_text_with_its_line_breaks() -> None:
    body = fixture_bytes("cap/weather.cap")
    marked = body.replace(
        b"<instruction>",
        b"<instruction>Move to higher ground.&lt;br /&gt;Do not drive through water.&lt;p&gt;"
        b"Call &lt;b&gt;911&lt;/b&gt;.&lt;/p&gt;",
        1,
    )
    [notice] = parse_cap(marked)
    text = notice.infos[0].instruction or ""
    assert text.startswith("Move to higher ground.\nDo not drive through water.\nCall 911.")
    assert "<" not in text
    [plain] = parse_cap(body)
    assert "\n" in (plain.infos[0].description or "")  # text without markup is kept as written


@pytest.mark.parametrize(("code", "status"), [("RMT", "test"), ("RWT", "test"), ("FFA", "actual")])
def test_an_eas_required_test_marked_actual_is_a_test(code: str, status: str) -> None:
    """An EAS Required Monthly or Weekly Test is sent marked Actual (it tests the real chain)
    and is never an alert for the public: read as a Test, it reaches only the channels that
    take tests."""
    body = fixture_bytes("cap/weather.cap").replace(b"<value>FFA</value>", code.encode(), 1)
    body = body.replace(code.encode(), f"<value>{code}</value>".encode(), 1)
    [notice] = parse_cap(body)
    assert notice.status.value == status


def test_an_alert_in_an_unknown_namespace_is_named_with_the_versions_read() -> None:
    body = fixture_bytes("cap/weather.cap").replace(b"cap:1.1", b"cap:9.9", 1)
    with pytest.raises(SourceError, match=r"namespace 'urn:oasis:names:tc:emergency:cap:9.9'"):
        parse_cap(body, what="ns")


def test_a_source_may_take_required_tests_as_they_are_marked() -> None:
    """The setting `eas_required_tests = "actual"` (a station that relays the tests on purpose)
    keeps an RWT marked Actual as Actual; the default reads it as a Test."""
    from clarion.sources import build_sources
    from tests.helpers import config

    body = fixture_bytes("cap/weather.cap").replace(b"<value>FFA</value>", b"<value>RWT</value>")
    [default] = parse_cap(body)
    assert default.status.value == "test"
    assert parse_cap(body, required_tests="actual")[0].status.value == "actual"
    cfg = config(
        '[sources.relay]\nkind = "cap"\nurl = "https://alerts.example/cap.xml"\n'
        'eas_required_tests = "actual"\n[channels.preview]\nkind = "preview"\n'
    )
    assert build_sources(cfg)["relay"].required_tests == "actual"  # type: ignore[attr-defined]
