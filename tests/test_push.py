"""Push sources: signed POSTs to /hooks/{source}, JSON or CAP; replays and stale ones refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from clarion.channels import build_channels
from clarion.store import Store
from clarion.web.app import create_app
from tests.conftest import FIXTURES, WEBHOOK_SECRET
from tests.helpers import config, count, demo_cap, notices, rows, threads, where_it_runs

CONFIG = """
[clarion]
drop_expired = false
[sources.ops]
kind = "push"
secret = { env = "PUSH_SECRET" }
max_bytes = 4096
[channels.preview]
kind = "preview"
[[routes]]
channels = ["preview"]
"""


@pytest.fixture
def client(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("PUSH_SECRET", WEBHOOK_SECRET)
    cfg = config(CONFIG)
    with TestClient(create_app(store, cfg, build_channels(cfg))) as c:
        yield c


def signed(
    body: bytes, msg_id: str, when: datetime | None = None, ctype: str = "application/json"
) -> dict[str, str]:
    when = when or datetime.now(UTC)
    return {
        "content-type": ctype,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(WEBHOOK_SECRET).sign(msg_id, when, body.decode()),
    }


NOTICE = {
    "identifier": "water-1",
    "sent": "2026-11-27T08:00:00-05:00",
    "headline": "Boil water advisory for Elm St.",
    "severity": "moderate",
    "instruction": "Boil tap water for one minute before drinking.",
    "areas": [{"description": "Elm St.", "geocodes": {"FIPS6": ["030049"]}}],
}


def post(client: TestClient, data: object, msg_id: str, **kw) -> object:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return client.post("/hooks/ops", content=body, headers=signed(body, msg_id, **kw))


def test_signed_json_is_ingested(client: TestClient, store: Store) -> None:
    r = post(client, NOTICE, "msg_1")
    assert r.status_code == 202 and r.json()["stored"] == 1 and r.json()["deliveries"] == 1
    [n] = rows(store, notices)
    assert (n.source, n.kind, n.identifier, n.sender) == ("ops", "push", "water-1", "ops")
    assert n.data["infos"][0]["instruction"].startswith("Boil tap water")


def test_replay_is_not_ingested_twice(client: TestClient, store: Store) -> None:
    assert post(client, NOTICE, "msg_1").status_code == 202
    again = post(client, NOTICE, "msg_1")
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert count(store, notices) == 1


@pytest.mark.parametrize("age", [timedelta(minutes=-7), timedelta(minutes=7)])
def test_stale_or_future_timestamps_are_refused(client: TestClient, store: Store, age) -> None:
    r = post(client, NOTICE, "msg_2", when=datetime.now(UTC) - age)
    assert r.status_code == 401 and "signature refused" in r.json()["error"]
    assert count(store, notices) == 0


def test_bad_signature_is_refused(client: TestClient, store: Store) -> None:
    body = json.dumps(NOTICE).encode()
    headers = signed(body, "msg_3")
    r = client.post("/hooks/ops", content=body.replace(b"Elm", b"Oak"), headers=headers)
    assert r.status_code == 401
    r = client.post("/hooks/ops", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 401
    assert count(store, notices) == 0


def test_unknown_source_oversize_and_invalid_schema(client: TestClient) -> None:
    body = json.dumps(NOTICE).encode()
    assert client.post("/hooks/nope", content=body, headers=signed(body, "m")).status_code == 404
    big = {**NOTICE, "description": "x" * 5000}
    assert post(client, big, "m4").status_code == 413
    r = post(client, {**NOTICE, "severity": "apocalyptic"}, "m5")
    assert r.status_code == 422 and "severity" in r.json()["error"]
    r = post(client, {**NOTICE, "sent": "2026-11-27T08:00:00"}, "m6")
    assert r.status_code == 422 and "sent" in r.json()["error"]


def test_update_by_reference_and_batch(client: TestClient, store: Store) -> None:
    post(client, NOTICE, "a")
    update = {
        **NOTICE,
        "identifier": "water-2",
        "msg_type": "update",
        "references": ["water-1"],
        "sent": "2026-11-27T10:00:00-05:00",
        "headline": "Boil water advisory extended",
    }
    cancel = {
        **NOTICE,
        "identifier": "water-3",
        "msg_type": "cancel",
        "references": ["water-2"],
        "sent": "2026-11-27T12:00:00-05:00",
        "headline": "Boil water advisory lifted",
    }
    r = post(client, {"notices": [cancel, update]}, "b")
    assert r.status_code == 202 and r.json()["stored"] == 2
    [t] = rows(store, threads)
    assert t.latest_version == 3 and t.state == "cancelled"


def test_cap_xml_is_accepted(client: TestClient, store: Store) -> None:
    r = post(client, demo_cap(0), "cap-1", ctype="application/cap+xml")
    assert r.status_code == 202 and r.json()["stored"] == 1
    assert rows(store, notices)[0].kind == "cap"
    bad = post(
        client, b"<alert><identifier>x</identifier></alert>", "cap-2", ctype="application/cap+xml"
    )
    assert bad.status_code == 422 and "required element" in bad.json()["error"]


def test_push_schema_is_in_the_openapi_document(client: TestClient) -> None:
    doc = client.get("/api/openapi.json").json()
    body = doc["paths"]["/hooks/{source}"]["post"]["requestBody"]["content"]
    assert "application/json" in body and "application/cap+xml" in body


TWO_SOURCES = """
[clarion]
drop_expired = false
[sources.ops]
kind = "push"
secret = { env = "PUSH_SECRET" }
[sources.partner]
kind = "push"
secret = { env = "PARTNER_SECRET" }
[channels.preview]
kind = "preview"
[[routes]]
channels = ["preview"]
"""
PARTNER_SECRET = "whsec_" + base64.b64encode(b"partner-secret-of-32-bytes-long!").decode()


def sign_bytes(secret: str, body: bytes, msg_id: str) -> dict[str, str]:
    """The sender's side of Standard Webhooks, over the body's bytes as they go on the wire."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    stamp = str(int(datetime.now(UTC).timestamp()))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


@pytest.fixture
def two(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("PUSH_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("PARTNER_SECRET", PARTNER_SECRET)
    cfg = config(TWO_SOURCES)
    with TestClient(create_app(store, cfg, build_channels(cfg))) as c:
        yield c


def test_cap_in_iso_8859_1_is_verified_as_bytes(two: TestClient, store: Store) -> None:
    """CAP allows ISO-8859-1; the sender signs the bytes it sends. Verified as bytes, then
    decoded by the document's declared encoding: "Usulután" arrives whole."""
    body = (FIXTURES / "cap" / "earthquake-iso8859-1.cap").read_bytes()
    assert b"Usulut\xe1n" in body
    headers = {**sign_bytes(WEBHOOK_SECRET, body, "q-1"), "content-type": "application/cap+xml"}
    r = two.post("/hooks/ops", content=body, headers=headers)
    assert r.status_code == 202, r.text
    assert "Usulután" in json.dumps(rows(store, notices)[0].data, ensure_ascii=False)
    tampered = body.replace(b"Usulut\xe1n", b"Usulut\xe9n")
    r = two.post("/hooks/ops", content=tampered, headers=headers | {"webhook-id": "q-1"})
    assert r.status_code == 401


def test_receipts_are_per_source(two: TestClient, store: Store) -> None:
    """Another source's webhook-id never makes a validly signed notice a "duplicate"."""
    a = json.dumps(NOTICE).encode()
    b = json.dumps({**NOTICE, "identifier": "partner-1", "headline": "Road closed"}).encode()
    r1 = two.post("/hooks/ops", content=a, headers=sign_bytes(WEBHOOK_SECRET, a, "msg-1"))
    r2 = two.post("/hooks/partner", content=b, headers=sign_bytes(PARTNER_SECRET, b, "msg-1"))
    assert (r1.status_code, r2.status_code) == (202, 202)
    assert r2.json()["stored"] == 1
    assert sorted(n.identifier for n in rows(store, notices)) == ["partner-1", "water-1"]
    again = two.post("/hooks/partner", content=b, headers=sign_bytes(PARTNER_SECRET, b, "msg-1"))
    assert again.json()["status"] == "duplicate"


def test_a_push_cannot_change_another_sources_story(two: TestClient, store: Store) -> None:
    a = json.dumps(NOTICE).encode()
    two.post("/hooks/ops", content=a, headers=sign_bytes(WEBHOOK_SECRET, a, "m-1"))
    sender = rows(store, notices)[0].sender
    cancel = {
        "identifier": "partner-cancel",
        "sender": sender,  # even naming the victim's sender
        "sent": "2026-11-27T09:00:00-05:00",
        "msg_type": "cancel",
        "references": ["water-1"],
        "headline": "All clear",
    }
    c = json.dumps(cancel).encode()
    r = two.post("/hooks/partner", content=c, headers=sign_bytes(PARTNER_SECRET, c, "m-2"))
    assert r.status_code == 202
    by_source = {t.source: t for t in rows(store, threads)}
    assert by_source["ops"].state == "active"  # not cancelled
    assert by_source["partner"].id != by_source["ops"].id


def test_a_push_is_verified_and_ingested_off_the_event_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One 1,000-notice push stalled /healthz for 12 s when it was ingested on the loop."""
    import clarion.web.hooks as hooks

    where = where_it_runs(monkeypatch, hooks, "ingest")
    assert post(client, NOTICE, "loop-1").status_code == 202
    assert where == [False]


def test_receipts_are_kept_a_month_not_forever(store: Store) -> None:
    """Every accepted push left a receipt for as long as Clarion ran: a table that only grew.
    Receipts older than `receipts.KEEP` (30 days, far past any sender's retries) are dropped
    as new ones are recorded; younger ones still answer "duplicate"."""

    from clarion.store import receipts

    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    receipts.record(store, "ops", "old", now - receipts.KEEP - timedelta(seconds=1))
    receipts.record(store, "partner", "recent", now - receipts.KEEP + timedelta(hours=1))
    assert receipts.seen(store, "ops", "old")  # nothing pruned before a newer push
    receipts.record(store, "ops", "new", now)
    assert not receipts.seen(store, "ops", "old")
    assert receipts.seen(store, "partner", "recent") and receipts.seen(store, "ops", "new")
