"""Clarion as an ActivityPub server: the documents it serves, the inbox (every request's
signature verified), and delivery of notices to followers' servers, signed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clarion.config import Config
from clarion.delivery.dispatcher import Dispatcher
from clarion.fediverse import accounts
from clarion.fediverse.documents import handle, note, webfinger
from clarion.model import Status
from clarion.store import Store
from clarion.store.schema import deliveries
from clarion.web.app import create_app
from tests.fakes.fediverse import FakeFediverse
from tests.fakes.http import Response
from tests.golden import check_golden
from tests.helpers import NOW, channels_for, config, demo_cap, desk_login, ingest_bytes, rows

BASE = "http://testserver"
INBOX = f"{BASE}/ap/alerts/inbox"
ME = f"{BASE}/ap/alerts"


def cfg(extra: str = "") -> Config:
    return config(f"""
[clarion]
public_url = "{BASE}"
publisher_name = "Helena Water Utility"
drop_expired = false
follow = [{{ label = "Website", url = "https://water.example.gov" }}]
[channels.fedi]
kind = "activitypub"
username = "alerts"
summary = "Water service alerts for Helena"
hashtags = ["HelenaWater"]
statuses = ["actual", "test"]
{extra}
[[routes]]
channels = ["fedi"]
""")


@pytest.fixture(autouse=True)
def _close_channels(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every channel a test builds is closed after it (their HTTP clients)."""
    import tests.test_fediverse as me
    from clarion.channels.base import close_all

    built: list[Any] = []

    from tests.helpers import channels_for as build

    def channels(c: Config) -> Any:
        built.append(build(c))
        return built[-1]

    monkeypatch.setattr(me, "channels_for", channels)
    yield
    for chans in built:
        close_all(chans)


@pytest.fixture
def remote() -> Iterator[FakeFediverse]:
    with FakeFediverse() as f:
        yield f


def our_key(store: Store) -> Any:
    def resolve(key_id: str) -> str:
        assert key_id == f"{ME}#main-key"
        return accounts.keypair(store, "alerts", NOW)[1]

    return resolve


def test_webfinger_actor_and_nodeinfo(sqlite_store: Store) -> None:
    client = TestClient(create_app(sqlite_store, cfg(), channels_for(cfg())))
    wf = client.get("/.well-known/webfinger", params={"resource": "acct:alerts@testserver"})
    assert wf.status_code == 200 and wf.headers["content-type"] == "application/jrd+json"
    assert wf.json()["links"][0] == {"rel": "self", "type": "application/activity+json", "href": ME}
    for wrong in ("acct:nobody@testserver", "acct:alerts@elsewhere.example"):
        assert client.get("/.well-known/webfinger", params={"resource": wrong}).status_code == 404
    doc = client.get("/ap/alerts", headers={"Accept": "application/activity+json"})
    assert doc.headers["content-type"] == "application/activity+json"
    actor = doc.json()
    assert actor["publicKey"]["publicKeyPem"] == accounts.keypair(sqlite_store, "alerts", NOW)[1]
    actor["publicKey"]["publicKeyPem"] = "<the account's key>"
    actor["published"] = "<when the key was made>"
    check_golden("fediverse/actor", actor)
    browser = client.get("/ap/alerts", headers={"Accept": "text/html"}, follow_redirects=False)
    assert browser.status_code == 303 and browser.headers["location"] == f"{BASE}/"
    links = client.get("/.well-known/nodeinfo").json()["links"]
    info = client.get(links[0]["href"].removeprefix(BASE)).json()
    assert info["protocols"] == ["activitypub"] and info["software"]["name"] == "clarion"
    assert client.get("/ap/alerts/followers").json()["totalItems"] == 0
    assert handle(BASE, "alerts") == "@alerts@testserver"
    check_golden("fediverse/webfinger", webfinger("https://alerts.example.org", "alerts"))


def test_a_signed_follow_is_accepted_and_an_undo_removes_it(
    sqlite_store: Store, remote: FakeFediverse
) -> None:
    remote.resolve_key = our_key(sqlite_store)
    client = TestClient(create_app(sqlite_store, cfg(), channels_for(cfg())))
    body, headers = remote.signed(INBOX, remote.follow(ME))
    r = client.post("/ap/alerts/inbox", content=body, headers=headers)
    assert r.status_code == 202, r.text
    (f,) = accounts.list_followers(sqlite_store, "alerts")
    assert f.actor == remote.actor and f.state == "accepted"
    assert f.delivery_inbox == f"{remote.url}/inbox"  # the shared inbox
    (acc,) = remote.activities("Accept")  # sent back, signed by us, verified by them
    assert remote.received[0]["verified"], remote.received[0]["error"]
    assert acc["actor"] == ME and acc["object"]["id"] == remote.follow(ME)["id"]
    assert client.get("/ap/alerts/followers").json()["totalItems"] == 1
    undo = {"type": "Undo", "id": f"{remote.actor}#undo", "actor": remote.actor,
            "object": remote.follow(ME)}  # fmt: skip
    body, headers = remote.signed(f"{BASE}/ap/inbox", undo)  # the shared inbox this time
    assert client.post("/ap/inbox", content=body, headers=headers).status_code == 202
    assert accounts.list_followers(sqlite_store, "alerts") == []


def test_bad_signatures_are_refused(sqlite_store: Store, remote: FakeFediverse) -> None:
    from clarion.fediverse.signatures import new_key

    client = TestClient(create_app(sqlite_store, cfg(), channels_for(cfg())))
    follow = remote.follow(ME)
    body, headers = remote.signed(INBOX, follow)
    cases = {
        "unsigned": (body, {"Content-Type": "application/activity+json"}),
        "tampered body": (body.replace(b"Follow", b"Block"), headers),
        "stale": remote.signed(INBOX, follow, at=datetime.now(UTC) - timedelta(hours=13)),
        "wrong key": remote.signed(INBOX, follow, key=new_key()[0]),
        "another actor": remote.signed(INBOX, {**follow, "actor": "http://127.0.0.1:1/users/x"}),
    }
    for case, (b, h) in cases.items():
        r = client.post("/ap/alerts/inbox", content=b, headers=h)
        assert r.status_code == 401, case
        assert "signature refused" in r.json()["detail"] or "another actor" in r.json()["detail"]
    assert accounts.list_followers(sqlite_store, "alerts") == []
    assert client.post("/ap/alerts/inbox", content=b"not json", headers=headers).status_code == 400


def test_a_deleted_account_is_forgotten(sqlite_store: Store, remote: FakeFediverse) -> None:
    remote.resolve_key = our_key(sqlite_store)
    client = TestClient(create_app(sqlite_store, cfg(), channels_for(cfg())))
    body, headers = remote.signed(INBOX, remote.follow(ME))
    assert client.post("/ap/alerts/inbox", content=body, headers=headers).status_code == 202
    assert len(accounts.list_followers(sqlite_store, "alerts")) == 1
    delete = {"type": "Delete", "id": f"{remote.actor}#delete", "actor": remote.actor,
              "object": remote.actor}  # fmt: skip
    body, headers = remote.signed(f"{BASE}/ap/inbox", delete)
    remote.gone = True  # its key is cached: the Delete still verifies
    assert client.post("/ap/inbox", content=body, headers=headers).status_code == 202
    assert accounts.list_followers(sqlite_store, "alerts") == []


def test_follow_requests_can_be_held(sqlite_store: Store, remote: FakeFediverse) -> None:
    c = cfg("manually_approves_followers = true")
    client = TestClient(create_app(sqlite_store, c, channels_for(c)))
    body, headers = remote.signed(INBOX, remote.follow(ME))
    assert client.post("/ap/alerts/inbox", content=body, headers=headers).status_code == 202
    (f,) = accounts.list_followers(sqlite_store, "alerts")
    assert f.state == "pending" and remote.activities("Accept") == []
    assert accounts.inboxes(sqlite_store, "alerts") == []  # nothing goes to it yet


def _follower(store: Store, remote: FakeFediverse) -> None:
    accounts.add_follower(
        store, "alerts", remote.actor, f"{remote.actor}/inbox", f"{remote.url}/inbox",
        "accepted", NOW,
    )  # fmt: skip


@pytest.mark.parametrize("on_cancel", ["edit", "delete"])
def test_notices_go_to_followers_signed(
    sqlite_store: Store, remote: FakeFediverse, on_cancel: str
) -> None:
    c = cfg(f'on_cancel = "{on_cancel}"')
    chans = channels_for(c)
    remote.resolve_key = our_key(sqlite_store)
    _follower(sqlite_store, remote)
    disp = Dispatcher(sqlite_store, chans, clock=lambda: NOW)
    for i in range(3):  # the demo's watch, its update and its cancel
        ingest_bytes(sqlite_store, c, chans, demo_cap(i))
        assert disp.run_until_idle() == 1
    assert all(r["verified"] for r in remote.received), [r["error"] for r in remote.received]
    kinds = [a["type"] for a in remote.activities()]
    assert kinds == ["Create", "Update", "Update" if on_cancel == "edit" else "Delete"]
    create, update, last = remote.activities()
    note_id = create["object"]["id"]
    assert note_id == f"{ME}/notes/1" and update["object"]["id"] == note_id
    assert "Flash Flood Watch" in create["object"]["content"]
    assert f"{BASE}/notices/1" in create["object"]["content"]
    assert create["object"]["tag"][0]["name"] == "#HelenaWater"
    assert "UPDATE" in update["object"]["content"] and "updated" in update["object"]
    if on_cancel == "edit":
        assert "CANCELLED" in last["object"]["content"]
    else:
        assert last["object"] == {"id": note_id, "type": "Tombstone"}
    sent = rows(sqlite_store, deliveries, order=deliveries.c.version)
    assert [d.state for d in sent] == ["sent"] * 3 and sent[0].receipt_id == note_id
    # The outbox counts what it lists: one Create (the Note its update and cancel edit).
    outbox = TestClient(create_app(sqlite_store, c, chans)).get("/ap/alerts/outbox").json()
    assert outbox["totalItems"] == len(outbox["orderedItems"]) == 1


def test_a_test_notice_carries_a_content_warning(sqlite_store: Store) -> None:
    from clarion.sources.cap import parse_cap

    (notice,) = parse_cap(demo_cap(0))
    drill = notice.model_copy(update={"status": Status.TEST})
    doc = note(
        drill, base=BASE, username="alerts", thread=7, permalink=f"{BASE}/notices/7",
        languages=("en",), hashtags=["wx"],
    )  # fmt: skip
    assert doc["summary"] == "TEST — not a real alert" and doc["sensitive"] is True
    real = note(
        notice, base=BASE, username="alerts", thread=7, permalink=f"{BASE}/notices/7",
        languages=("en",), hashtags=["wx"],
    )  # fmt: skip
    assert "summary" not in real
    check_golden("fediverse/note", real)


def test_a_failing_server_is_retried_alone_then_dropped(sqlite_store: Store) -> None:
    c = cfg('drop_inbox_after = "1ms"')
    chans = channels_for(c)
    with FakeFediverse() as up, FakeFediverse() as down:
        for f in (up, down):
            f.resolve_key = our_key(sqlite_store)
            _follower(sqlite_store, f)
        down.script = [Response(500, {"error": "overloaded"})]
        clock = [NOW]
        disp = Dispatcher(sqlite_store, chans, clock=lambda: clock[0])
        ingest_bytes(sqlite_store, c, chans, demo_cap(0))
        disp.run_until_idle()
        (d,) = rows(sqlite_store, deliveries)
        assert d.state == "retry_wait" and "1 of 2 inbox(es) failed" in (d.last_error or "")
        assert len(up.activities("Create")) == 1 and down.activities() == []
        clock[0] = d.next_attempt_at
        disp.run_until_idle()
        assert rows(sqlite_store, deliveries)[0].state == "sent"
        assert len(up.activities("Create")) == 1 and len(down.activities("Create")) == 1
        # A server failing for longer than drop_inbox_after is dropped, and the rest go on.
        down.script = [Response(503, {}), Response(503, {})]
        ingest_bytes(sqlite_store, c, chans, demo_cap(1))
        clock[0] = NOW + timedelta(minutes=5)
        disp.run_until_idle()
        clock[0] = NOW + timedelta(hours=1)
        disp.run_until_idle()
        states = {f.actor: f.state for f in accounts.list_followers(sqlite_store, "alerts")}
        assert states[down.actor] == "dropped" and states[up.actor] == "accepted"
        assert rows(sqlite_store, deliveries, deliveries.c.version == 2)[0].state == "sent"
        assert len(up.activities("Update")) == 1


def test_an_account_needs_a_public_url() -> None:
    from clarion.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"needs clarion\.public_url"):
        parse_config('[channels.f]\nkind = "activitypub"\nusername = "alerts"\n')


def test_cli_lists_approves_and_rejects_followers(
    tmp_path: Any, remote: FakeFediverse, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from clarion.cli import app
    from clarion.store import open_store

    db = f"sqlite:///{tmp_path / 'c.db'}"
    text = f"""
[clarion]
database_url = "{db}"
public_url = "{BASE}"
allow_networks = ["127.0.0.0/8"]
[channels.fedi]
kind = "activitypub"
username = "alerts"
manually_approves_followers = true
[[routes]]
channels = ["fedi"]
"""
    (tmp_path / "clarion.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    store = open_store(db)
    remote.resolve_key = our_key(store)
    c = cfg("manually_approves_followers = true")
    client = TestClient(create_app(store, c, channels_for(c)))
    body, headers = remote.signed(INBOX, remote.follow(ME))
    assert client.post("/ap/alerts/inbox", content=body, headers=headers).status_code == 202
    runner = CliRunner()
    out = runner.invoke(app, ["fediverse", "followers", "fedi"]).output
    assert f"{remote.actor}  pending" in out
    status = runner.invoke(app, ["status"]).output
    assert "@alerts@testserver: 0 follower(s), 1 waiting for approval" in status
    r = runner.invoke(app, ["fediverse", "approve", "alerts", remote.actor])
    assert r.exit_code == 0, r.output
    (acc,) = remote.activities("Accept")
    assert acc["object"]["id"] == remote.follow(ME)["id"] and remote.received[-1]["verified"]
    assert "1 follower(s)" in runner.invoke(app, ["status"]).output
    r = runner.invoke(app, ["fediverse", "reject", "alerts", remote.actor])
    assert r.exit_code == 1 and "not waiting for approval" in r.output
    assert runner.invoke(app, ["fediverse", "followers", "nope"]).exit_code == 2
    store.close()


def test_the_desk_and_the_page_show_the_account(sqlite_store: Store, remote: FakeFediverse) -> None:
    from clarion.desk import accounts as desk_accounts

    _follower(sqlite_store, remote)
    desk_accounts.add_user(sqlite_store, "vera", "correct horse battery", "viewer", NOW, by="t")
    client = TestClient(create_app(sqlite_store, cfg(), channels_for(cfg())))
    page = client.get("/").text
    assert "@alerts@testserver" in page and f'href="{ME}"' in page
    desk_login(client, "vera", "correct horse battery")
    assert "1 follower(s)" in client.get("/desk/live").text


def test_every_activity_and_nodeinfo_golden() -> None:
    from clarion.fediverse.documents import accept, activity, nodeinfo, nodeinfo_links
    from clarion.sources.cap import parse_cap

    base = "https://alerts.example.org"
    me = f"{base}/ap/alerts"
    docs: dict[str, Any] = {}
    for i, kind in enumerate(("Create", "Update", "Update")):  # alert, update, cancel (edit)
        (n,) = parse_cap(demo_cap(i))
        obj = note(
            n, base=base, username="alerts", thread=1, permalink=f"{base}/notices/1",
            languages=("en",), hashtags=["wx"],
        )  # fmt: skip
        docs[f"{i}-{kind}"] = activity(kind, f"{me}/activities/d{i}", me, obj, NOW)
    tomb = {"id": f"{me}/notes/1", "type": "Tombstone"}
    docs["3-Delete"] = activity("Delete", f"{me}/activities/d3", me, tomb, NOW)
    follow = {"id": "https://mastodon.example/f/1", "type": "Follow",
              "actor": "https://mastodon.example/users/ann", "object": me}  # fmt: skip
    docs["4-Accept"] = accept(base, "alerts", follow, f"{me}#accepts/1")
    docs["nodeinfo"] = nodeinfo("0.1.0", 1, 42, "Helena Water Utility")
    docs["nodeinfo-links"] = nodeinfo_links(base)
    assert "CANCELLED" in docs["2-Update"]["object"]["content"]
    assert docs["0-Create"]["to"] == ["https://www.w3.org/ns/activitystreams#Public"]
    check_golden("fediverse/activities", docs)


def test_a_key_naming_someone_else_as_owner_is_refused(
    sqlite_store: Store, remote: FakeFediverse
) -> None:
    """An attacker serves, from its own host, a key document that names a real follower as the
    key's owner, and signs an Undo and a Delete "as" that follower. The key is not the actor's
    own (another host, and the actor does not list it): refused, and the follower stays."""
    remote.resolve_key = our_key(sqlite_store)
    client = TestClient(create_app(sqlite_store, cfg(), channels_for(cfg())))
    body, headers = remote.signed(INBOX, remote.follow(ME))
    assert client.post("/ap/alerts/inbox", content=body, headers=headers).status_code == 202
    with FakeFediverse() as attacker:
        forged = attacker.actor_doc()
        forged["publicKey"]["owner"] = remote.actor  # "this key is the victim's"
        attacker.actor_doc = lambda: forged  # type: ignore[method-assign]
        undo = {"type": "Undo", "id": f"{remote.actor}#undo", "actor": remote.actor,
                "object": remote.follow(ME)}  # fmt: skip
        delete = {"type": "Delete", "id": f"{remote.actor}#del", "actor": remote.actor,
                  "object": remote.actor}  # fmt: skip
        follow = {**remote.follow(ME), "id": f"{remote.actor}#follows/2"}
        for activity in (undo, delete, follow):
            b, h = attacker.signed(INBOX, activity)
            r = client.post("/ap/alerts/inbox", content=b, headers=h)
            assert r.status_code == 401, activity["type"]
            assert "owner's host" in r.json()["detail"]
    # Same host, but the actor's own document lists another key: refused too.
    other_key = f"{remote.url}/keys/stray"
    stray = {**remote.actor_doc(), "id": other_key}
    stray["publicKey"] = {**stray["publicKey"], "id": other_key}
    real_handle = remote.handle

    def handle(req: Any) -> Any:
        from tests.fakes.http import Response

        if req.method == "GET" and req.path == "/keys/stray":
            return Response(200, stray, content_type="application/activity+json")
        return real_handle(req)

    remote.server.handle = handle  # type: ignore[method-assign]
    from clarion.fediverse.signatures import sign

    b = json.dumps(undo).encode()
    h = sign("POST", INBOX, b, other_key, remote.private, now=datetime.now(UTC))
    r = client.post("/ap/alerts/inbox", content=b, headers=h)
    assert r.status_code == 401 and "does not list the key" in r.json()["detail"]
    assert [f.actor for f in accounts.list_followers(sqlite_store, "alerts")] == [remote.actor]


def test_a_document_on_the_victims_host_claiming_to_be_the_victim_is_not_its_key(
    sqlite_store: Store, remote: FakeFediverse
) -> None:
    """Security item 4: an attacker uploads a JSON file to the victim's own server (an
    attachment, a paste) whose `id` says it is the victim's actor and whose key is the
    attacker's, then signs an Undo(Follow) "as" the victim with that key. The document's
    `id` is not the URL it came from, and the victim's actor, fetched from its own URL, does
    not list the key: refused, and the follower stays."""
    from clarion.fediverse.signatures import sign
    from tests.fakes.http import Response

    remote.resolve_key = our_key(sqlite_store)
    client = TestClient(create_app(sqlite_store, cfg(), channels_for(cfg())))
    body, headers = remote.signed(INBOX, remote.follow(ME))
    assert client.post("/ap/alerts/inbox", content=body, headers=headers).status_code == 202
    with FakeFediverse() as attacker:  # only its key pair is used
        upload = f"{remote.url}/media/upload.json"
        forged = {**remote.actor_doc(), "id": remote.actor}
        forged["publicKey"] = {
            "id": f"{upload}#main-key",
            "owner": remote.actor,
            "publicKeyPem": attacker.actor_doc()["publicKey"]["publicKeyPem"],
        }
        real_handle = remote.handle

        def handle(req: Any) -> Any:
            if req.method == "GET" and req.path == "/media/upload.json":
                return Response(200, forged, content_type="application/activity+json")
            return real_handle(req)

        remote.server.handle = handle  # type: ignore[method-assign]
        undo = {"type": "Undo", "id": f"{remote.actor}#undo", "actor": remote.actor,
                "object": remote.follow(ME)}  # fmt: skip
        b = json.dumps(undo).encode()
        h = sign("POST", INBOX, b, f"{upload}#main-key", attacker.private, now=datetime.now(UTC))
        r = client.post("/ap/alerts/inbox", content=b, headers=h)
    assert r.status_code == 401 and "does not list the key" in r.json()["detail"]
    assert [f.actor for f in accounts.list_followers(sqlite_store, "alerts")] == [remote.actor]


def test_a_key_document_that_inflates_is_cut_off(sqlite_store: Store) -> None:
    """A key URL answering a small gzip body that inflates to 64 MiB: read no further than
    1 MiB after decompression, and refused with the reason (it grew the process to 2.2 GiB)."""
    import gzip

    from tests.fakes.http import FakeServer, Response

    bomb = gzip.compress(b"{" + b" " * (64 * 1024 * 1024) + b"}", compresslevel=9)
    assert len(bomb) < 128 * 1024
    with (
        FakeServer(
            lambda req: Response(
                200,
                raw=bomb,
                content_type="application/activity+json",
                headers={"Content-Encoding": "gzip"},
            )
        ) as attacker,
        FakeFediverse() as remote,
    ):
        from clarion.fediverse.signatures import sign

        key_id = f"{attacker.url}/users/x#main-key"
        body = json.dumps({**remote.follow(ME), "actor": f"{attacker.url}/users/x"}).encode()
        headers = sign("POST", INBOX, body, key_id, remote.private, now=datetime.now(UTC))
        client = TestClient(create_app(sqlite_store, cfg(), channels_for(cfg())))
        r = client.post("/ap/alerts/inbox", content=body, headers=headers)
        assert r.status_code == 401 and "too large" in r.json()["detail"]


def test_the_note_carries_the_alerts_images_with_alt_text() -> None:
    from clarion.fediverse.documents import note
    from clarion.sources.cap import parse_cap
    from tests.conftest import fixture_bytes

    cap = fixture_bytes("cap/wcatwc-warning.cap").replace(b"<uri>http://", b"<uri>https://")
    [warning] = parse_cap(cap)
    doc = note(warning, base=BASE, username="alerts", thread=1, permalink=f"{BASE}/notices/1",
               languages=("en",), hashtags=[])  # fmt: skip
    names = [a["name"] for a in doc["attachment"]]
    assert names == ["Energy Map", "Tsunami Travel Time Map"]  # the JSON document is no image
    assert all(a["url"].startswith("https://") and a["mediaType"] == "image/jpeg"
               for a in doc["attachment"])  # fmt: skip
