"""The desk's core, without a browser: accounts and sessions, drafts through approval and
scheduling to the outbox (on SQLite and PostgreSQL), follow-ups, previews, the audit log, and
the pages' protections (login, CSRF, same origin, roles) through the real app."""

from __future__ import annotations

import csv
import io
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from clarion.delivery.dispatcher import Dispatcher
from clarion.desk import accounts, audit, drafts
from clarion.desk.accounts import AccountError, LoginRefused
from clarion.manual import NoticeIn
from clarion.model import Severity, Status
from clarion.store import Store
from clarion.store.schema import audit_log, deliveries, notices, users
from clarion.store.schema import drafts as drafts_t
from clarion.web.app import create_app
from tests.helpers import (
    channels_for,
    config,
    count,
    demo_cap,
    desk_login,
    ingest_bytes,
    rows,
    where_it_runs,
)

T0 = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"

DESK = """
[clarion]
public_url = "https://alerts.example.org"
[desk]
approval_min_severity = "moderate"
[channels.public]
kind = "preview"
[channels.drills]
kind = "preview"
statuses = ["test", "exercise"]
[[routes]]
channels = ["public", "drills"]
"""


def people(store: Store) -> dict[str, accounts.User]:
    out = {}
    for name, role in [
        ("vera", "viewer"),
        ("eddie", "editor"),
        ("ada", "approver"),
        ("abe", "approver"),
        ("root", "admin"),
    ]:
        out[name] = accounts.add_user(store, name, PASSWORD, role, T0, by="test")
    return out


def body(**kw: object) -> NoticeIn:
    data: dict[str, object] = {
        "headline": "Boil water notice for the east side",
        "description": "A main broke on 5th Street. Boil tap water for one minute.",
        "severity": "severe",
        "urgency": "immediate",
        "certainty": "observed",
        "categories": ["Health"],
        "areas": [{"description": "East Helena", "geocodes": [{"name": "UGC", "value": "MTZ014"}]}],
    }
    data.update(kw)
    return NoticeIn.model_validate(data)


# --- Accounts -----------------------------------------------------------------------------------


def test_passwords_are_stored_as_argon2id_and_checked(sqlite_store: Store) -> None:
    people(sqlite_store)
    stored = rows(sqlite_store, users, users.c.username == "eddie")[0].password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    u = accounts.authenticate(
        sqlite_store, "Eddie ", PASSWORD, T0, ip="10.0.0.1", max_failures=5, window=900
    )
    assert u.username == "eddie" and u.role == "editor"
    with pytest.raises(LoginRefused):
        accounts.authenticate(
            sqlite_store, "eddie", PASSWORD + "x", T0, ip="10.0.0.1", max_failures=5, window=900
        )
    with pytest.raises(AccountError, match="at least 12"):
        accounts.add_user(sqlite_store, "shorty", "short", "viewer", T0, by="test")
    with pytest.raises(AccountError, match="already"):
        accounts.add_user(sqlite_store, "eddie", PASSWORD, "viewer", T0, by="test")
    with pytest.raises(AccountError, match="role"):
        accounts.add_user(sqlite_store, "newbie", PASSWORD, "superuser", T0, by="test")


def test_logins_are_throttled_per_client_and_nobody_can_lock_anyone_out(
    sqlite_store: Store,
) -> None:
    people(sqlite_store)

    def attempt(name: str, password: str, ip: str, at: datetime) -> accounts.User:
        return accounts.authenticate(
            sqlite_store, name, password, at, ip=ip, max_failures=3, window=900
        )

    # An attacker guessing ada's password from one address is stopped after 3 tries…
    for _ in range(3):
        with pytest.raises(LoginRefused) as exc:
            attempt("ada", "wrong password!", "203.0.113.66", T0)
        assert not exc.value.throttled
    with pytest.raises(LoginRefused) as exc:
        attempt("ada", PASSWORD, "203.0.113.66", T0 + timedelta(minutes=1))
    assert exc.value.throttled  # even with the right password, from that address
    # …but cannot lock ada out: from her own address, her password works.
    assert attempt("ada", PASSWORD, "10.9.9.9", T0 + timedelta(minutes=1)).username == "ada"
    # After the window the attacker's address may try again.
    with pytest.raises(LoginRefused) as exc:
        attempt("ada", "wrong again", "203.0.113.66", T0 + timedelta(minutes=16))
    assert not exc.value.throttled
    # One address guessing many names is stopped too.
    for name in ("x1", "x2", "x3"):
        with pytest.raises(LoginRefused):
            attempt(name, "guess-guess-guess", "192.0.2.7", T0)
    with pytest.raises(LoginRefused) as exc:
        attempt("abe", PASSWORD, "192.0.2.7", T0 + timedelta(minutes=1))
    assert exc.value.throttled


def test_a_name_attacked_from_many_addresses_hits_a_ceiling(sqlite_store: Store) -> None:
    """Many addresses, a few guesses each: past the ceiling, every address that has failed is
    stopped at once; an address that has not failed still logs in with the right password."""
    people(sqlite_store)

    def attempt(password: str, ip: str) -> accounts.User:
        return accounts.authenticate(
            sqlite_store, "ada", password, T0, ip=ip, max_failures=3, window=900
        )

    for i in range(3 * accounts.GLOBAL_FACTOR):
        with pytest.raises(LoginRefused):
            attempt("wrong password!", f"198.51.100.{i % 200}")
    with pytest.raises(LoginRefused) as exc:
        attempt("another guess", "198.51.100.1")  # failed once before: stopped
    assert exc.value.throttled
    assert attempt(PASSWORD, "10.9.9.9").username == "ada"


def test_disabling_or_a_new_password_ends_sessions(sqlite_store: Store) -> None:
    p = people(sqlite_store)
    token = accounts.start_session(sqlite_store, p["eddie"], T0, 3600, ip=None, user_agent="t")
    assert accounts.session(sqlite_store, token, T0) is not None
    assert accounts.session(sqlite_store, token, T0 + timedelta(hours=2)) is None  # expired
    accounts.set_password(sqlite_store, "eddie", "another long password", T0, by="root")
    assert accounts.session(sqlite_store, token, T0) is None
    token = accounts.start_session(sqlite_store, p["eddie"], T0, 3600, ip=None, user_agent="t")
    accounts.set_disabled(sqlite_store, "eddie", True, T0, by="root")
    assert accounts.session(sqlite_store, token, T0) is None
    with pytest.raises(LoginRefused):
        accounts.authenticate(
            sqlite_store, "eddie", "another long password", T0, ip=None, max_failures=5, window=60
        )
    actions = [r.action for r in rows(sqlite_store, audit_log, order=audit_log.c.id)]
    assert {"user_add", "user_passwd", "user_disable", "login", "login_failed"} <= set(actions)


def test_users_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clarion.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLARION_DATABASE_URL", f"sqlite:///{tmp_path / 'c.db'}")
    runner = CliRunner()
    r = runner.invoke(
        app, ["users", "add", "maria", "--role", "approver", "--password-stdin"], input=PASSWORD
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["users", "add", "maria", "--password-stdin"], input=PASSWORD)
    assert r.exit_code == 2 and "already a user" in r.output
    r = runner.invoke(app, ["users", "add", "bob", "--password-stdin"], input="short")
    assert r.exit_code == 2 and "12 characters" in r.output
    r = runner.invoke(app, ["users", "list"])
    assert "maria  approver  active  never" in r.output
    assert runner.invoke(app, ["users", "disable", "maria"]).exit_code == 0
    assert "disabled" in runner.invoke(app, ["users", "list"]).output
    assert runner.invoke(app, ["users", "disable", "nobody"]).exit_code == 1
    r = runner.invoke(app, ["users", "passwd", "maria", "--password-stdin"], input="x" * 20)
    assert r.exit_code == 0
    assert runner.invoke(app, ["users", "enable", "maria"]).exit_code == 0


# --- Drafts: approval, test mode, scheduling (both databases) -------------------------------------


def queued(store: Store) -> list[str]:
    return sorted(r.channel for r in rows(store, deliveries))


def test_an_actual_notice_needs_a_second_person(store: Store) -> None:
    cfg = config(DESK)
    chans = channels_for(cfg)
    p = people(store)
    d = drafts.submit(
        store, cfg, chans, p["eddie"], "alert", body(), thread_id=None, send_at=None, now=T0
    )
    assert d.state == "awaiting_approval" and queued(store) == []
    with pytest.raises(drafts.DeskError, match="Only approvers"):
        drafts.approve(store, cfg, chans, d.id, p["eddie"], now=T0)
    with pytest.raises(drafts.DeskError, match="Only approvers"):
        drafts.approve(store, cfg, chans, d.id, p["vera"], now=T0)
    # An approver who wrote a notice cannot approve it either.
    own = drafts.submit(
        store, cfg, chans, p["ada"], "alert", body(headline="Ada's"), thread_id=None,
        send_at=None, now=T0,
    )  # fmt: skip
    with pytest.raises(drafts.DeskError, match="second person"):
        drafts.approve(store, cfg, chans, own.id, p["ada"], now=T0)
    assert queued(store) == []
    sent = drafts.approve(store, cfg, chans, d.id, p["ada"], now=T0)
    assert sent.state == "sent" and sent.approver == "ada" and sent.notice_id is not None
    assert queued(store) == ["public"]  # Actual: never the test-only channel
    with pytest.raises(drafts.DeskError, match="not awaiting"):
        drafts.approve(store, cfg, chans, d.id, p["abe"], now=T0)
    log = [(r.actor, r.action) for r in rows(store, audit_log, order=audit_log.c.id)]
    assert ("eddie", "compose") in log and ("ada", "approve") in log and ("ada", "send") in log


def test_below_the_threshold_and_drills_go_at_once(store: Store) -> None:
    cfg = config(DESK)
    chans = channels_for(cfg)
    p = people(store)
    minor = drafts.submit(
        store, cfg, chans, p["eddie"], "alert", body(severity="minor"), thread_id=None,
        send_at=None, now=T0,
    )  # fmt: skip
    assert minor.state == "sent"
    drill = drafts.submit(
        store, cfg, chans, p["eddie"], "alert", body(status="test", headline="Drill"),
        thread_id=None, send_at=None, now=T0,
    )  # fmt: skip
    assert drill.state == "sent" and drill.is_drill
    by_notice = {(r.notice_id, r.channel) for r in rows(store, deliveries)}
    assert by_notice == {(minor.notice_id, "public"), (drill.notice_id, "drills")}
    viewer = p["vera"]
    with pytest.raises(drafts.DeskError, match="Only editors"):
        drafts.submit(
            store, cfg, chans, viewer, "alert", body(), thread_id=None, send_at=None, now=T0
        )


def test_approval_can_be_turned_off(sqlite_store: Store) -> None:
    cfg = config(
        DESK.replace('approval_min_severity = "moderate"', 'approval_min_severity = "off"')
    )
    p = people(sqlite_store)
    d = drafts.submit(
        sqlite_store, cfg, channels_for(cfg), p["eddie"], "alert", body(severity="extreme"),
        thread_id=None, send_at=None, now=T0,
    )  # fmt: skip
    assert d.state == "sent"


def test_scheduled_notices_go_when_due_and_only_once(store: Store) -> None:
    cfg = config(DESK)
    chans = channels_for(cfg)
    p = people(store)
    later = T0 + timedelta(hours=2)
    d = drafts.submit(
        store, cfg, chans, p["eddie"], "alert", body(), thread_id=None, send_at=later, now=T0
    )
    d = drafts.approve(store, cfg, chans, d.id, p["ada"], now=T0 + timedelta(minutes=5))
    assert d.state == "scheduled" and d.send_at == later
    assert drafts.send_due(store, cfg, chans, T0 + timedelta(hours=1)) == 0
    assert count(store, notices) == 0
    assert drafts.send_due(store, cfg, chans, later) == 1
    assert drafts.send_due(store, cfg, chans, later + timedelta(minutes=1)) == 0
    assert count(store, notices) == 1 and drafts.get(store, d.id).state == "sent"


def test_racing_senders_send_a_draft_once(store: Store) -> None:
    """Four workers' schedulers see the same due draft at once: one notice, one delivery."""
    cfg = config(DESK)
    chans = channels_for(cfg)
    p = people(store)
    d = drafts.submit(
        store, cfg, chans, p["eddie"], "alert", body(severity="minor"), thread_id=None,
        send_at=T0 + timedelta(minutes=1), now=T0,
    )  # fmt: skip
    assert d.state == "scheduled"
    start = threading.Barrier(4)
    results: list[bool] = []

    def worker() -> None:
        start.wait()
        results.append(
            drafts.send(store, cfg, chans, d.id, actor="w", now=T0 + timedelta(minutes=2))
        )

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert count(store, notices) == 1 and count(store, deliveries) == 1
    assert count(store, audit_log, audit_log.c.action == "send") == 1


def test_follow_ups_are_pre_drafted_and_thread_under_the_notice(store: Store) -> None:
    cfg = config(DESK)
    chans = channels_for(cfg)
    p = people(store)
    d = drafts.submit(
        store, cfg, chans, p["eddie"], "alert", body(), thread_id=None, send_at=None, now=T0
    )
    d = drafts.approve(store, cfg, chans, d.id, p["ada"], now=T0)
    Dispatcher(store, chans, clock=lambda: T0).run_until_idle()  # the alert is posted
    thread_id = rows(store, notices, notices.c.id == d.notice_id)[0].thread_id
    _, previous = drafts.latest(store, thread_id)
    cancel = drafts.prefill("cancel", previous)
    assert cancel.headline == body().headline and "cancelled" in (cancel.description or "")
    assert cancel.severity is Severity.SEVERE and cancel.status is Status.ACTUAL
    fix = drafts.prefill("correction", previous)
    assert (fix.description or "").startswith("CORRECTION:")
    # Cancelling a severe notice is as grave as sending it: approval again.
    c = drafts.submit(
        store, cfg, chans, p["eddie"], "cancel", cancel, thread_id=thread_id, send_at=None,
        now=T0 + timedelta(minutes=30),
    )  # fmt: skip
    assert c.state == "awaiting_approval"
    c = drafts.approve(store, cfg, chans, c.id, p["abe"], now=T0 + timedelta(minutes=31))
    assert c.state == "sent"
    versions = rows(store, notices, notices.c.thread_id == thread_id, order=notices.c.version)
    assert [v.msg_type for v in versions] == ["alert", "cancel"]
    # The dispatcher posts the cancel as a reply to the alert's post.
    Dispatcher(store, chans, clock=lambda: T0 + timedelta(minutes=32)).run_until_idle()
    sent = rows(store, deliveries, deliveries.c.thread_id == thread_id, order=deliveries.c.version)
    assert [s.state for s in sent] == ["sent", "sent"]
    assert sent[1].receipt["in_reply_to"] == sent[0].receipt_id
    # Nothing more to do to a cancelled notice; a draft written before the cancel fails.
    with pytest.raises(drafts.DeskError, match="already cancelled"):
        drafts.submit(
            store, cfg, chans, p["eddie"], "update", body(), thread_id=thread_id, send_at=None,
            now=T0,
        )  # fmt: skip


def test_one_editor_cannot_retract_an_actual_alert_with_a_drill(store: Store) -> None:
    """A Test or Exercise message needs no approval; so none may change an Actual story. The
    follow-up of an Actual alert is Actual, and needs what the original needed."""
    cfg = config(DESK)
    chans = channels_for(cfg)
    p = people(store)
    d = drafts.submit(
        store, cfg, chans, p["eddie"], "alert", body(), thread_id=None, send_at=None, now=T0
    )
    d = drafts.approve(store, cfg, chans, d.id, p["ada"], now=T0)
    thread_id = rows(store, notices, notices.c.id == d.notice_id)[0].thread_id
    _, previous = drafts.latest(store, thread_id)
    for action in ("cancel", "update", "correction"):
        sneaky = drafts.prefill(action, previous).model_copy(update={"status": Status.EXERCISE})
        with pytest.raises(drafts.DeskError, match="actual too"):
            drafts.submit(
                store, cfg, chans, p["eddie"], action, sneaky, thread_id=thread_id,
                send_at=None, now=T0,
            )  # fmt: skip
    versions = rows(store, notices, notices.c.thread_id == thread_id)
    assert [v.msg_type for v in versions] == ["alert"]


def test_the_desk_can_follow_up_a_sources_story(store: Store) -> None:
    """The operator's desk may cancel any story, whatever its source (a polled CAP alert)."""
    from tests.helpers import demo_cap, ingest_bytes

    cfg = config(DESK)
    chans = channels_for(cfg)
    p = people(store)
    ingest_bytes(store, cfg, chans, demo_cap(0), source="cap")
    thread_id = rows(store, notices)[0].thread_id
    _, previous = drafts.latest(store, thread_id)
    c = drafts.submit(
        store, cfg, chans, p["eddie"], "cancel", drafts.prefill("cancel", previous),
        thread_id=thread_id, send_at=None, now=T0,
    )  # fmt: skip
    c = drafts.approve(store, cfg, chans, c.id, p["ada"], now=T0)
    versions = rows(store, notices, notices.c.thread_id == thread_id, order=notices.c.version)
    assert [(v.source, v.msg_type) for v in versions] == [("cap", "alert"), ("desk", "cancel")]


def test_a_follow_up_whose_thread_ended_meanwhile_fails_with_the_reason(
    sqlite_store: Store,
) -> None:
    cfg = config(DESK)
    chans = channels_for(cfg)
    p = people(sqlite_store)
    d = drafts.submit(
        sqlite_store, cfg, chans, p["eddie"], "alert", body(severity="minor"), thread_id=None,
        send_at=None, now=T0,
    )  # fmt: skip
    tid = rows(sqlite_store, notices, notices.c.id == d.notice_id)[0].thread_id
    upd = drafts.submit(
        sqlite_store, cfg, chans, p["eddie"], "update", body(headline="Worse"), thread_id=tid,
        send_at=None, now=T0,
    )  # fmt: skip
    assert upd.state == "awaiting_approval"
    _, prev = drafts.latest(sqlite_store, tid)
    drafts.submit(
        sqlite_store, cfg, chans, p["eddie"], "cancel", drafts.prefill("cancel", prev),
        thread_id=tid, send_at=None, now=T0,
    )  # fmt: skip
    failed = drafts.approve(sqlite_store, cfg, chans, upd.id, p["ada"], now=T0)
    assert failed.state == "failed" and "already cancelled" in (failed.reason or "")
    assert count(sqlite_store, notices, notices.c.thread_id == tid) == 2


def test_the_preview_is_what_the_dispatcher_gets(sqlite_store: Store) -> None:
    cfg = config(DESK)
    chans = channels_for(cfg)
    p = people(sqlite_store)
    b = body(severity="minor")
    pv = drafts.preview(sqlite_store, cfg, chans, "alert", b, None)
    assert [c.name for c in pv.channels] == ["public"]
    assert pv.skipped == [("drills", "takes Test, Exercise notices only")]
    assert not pv.needs_approval
    shown = {post["label"]: post["text"] for post in pv.channels[0].posts}
    d = drafts.submit(
        sqlite_store, cfg, chans, p["eddie"], "alert", b, thread_id=None, send_at=None, now=T0
    )
    payload = rows(sqlite_store, deliveries, deliveries.c.notice_id == d.notice_id)[0].payload
    queued_texts = {k.capitalize(): v["text"] for k, v in payload["platforms"].items()}
    assert shown == queued_texts  # same renderer, same permalink (the id was guessed right)


# --- Audit log ----------------------------------------------------------------------------------


def test_audit_csv_is_filterable_and_safe_in_a_spreadsheet(sqlite_store: Store) -> None:
    audit.log(sqlite_store, T0, "eddie", "compose", target="draft 1", detail='=HYPERLINK("x")')
    audit.log(sqlite_store, T0 + timedelta(days=1), "ada", "approve", target="draft 1")
    flt = audit.AuditFilter(actor="eddie")
    got = list(csv.reader(io.StringIO(audit.to_csv(audit.entries(sqlite_store, flt)))))
    assert got[0] == ["id", "at", "actor", "action", "target", "detail", "ip"]
    assert len(got) == 2 and got[1][2] == "eddie" and got[1][5] == '\'=HYPERLINK("x")'
    since = audit.entries(sqlite_store, audit.AuditFilter(since=T0 + timedelta(hours=1)))
    assert [e.actor for e in since] == ["ada"]


# --- The pages' protections, through the app --------------------------------------------------


@pytest.fixture
def desk(sqlite_store: Store) -> TestClient:
    cfg = config(DESK)
    people(sqlite_store)
    app = create_app(sqlite_store, cfg, channels_for(cfg))
    return TestClient(app, base_url="https://alerts.example.org")


def login(client: TestClient, name: str) -> str:
    r = desk_login(client, name, PASSWORD)
    assert r.status_code == 303, r.text
    page = client.get("/desk/compose" if name != "vera" else "/desk")
    import re

    m = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert m
    return m.group(1)


def test_the_desk_needs_a_login(desk: TestClient) -> None:
    r = desk.get("/desk/compose", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/desk/login?next=/desk/compose"
    assert desk.get("/desk/live").status_code == 401  # the script's fetches: no redirect
    page = desk.get("/desk/login")
    assert page.status_code == 200 and "Log in" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    bad = desk_login(desk, "eddie", "nope")
    assert bad.status_code == 401 and "Wrong user name or password" in bad.text
    # The login form has its own token: a login posted by another page is refused, and so is
    # one from an opaque origin (a sandboxed frame sends Origin: null).
    forged = desk.post("/desk/login", data={"username": "eddie", "password": PASSWORD})
    assert forged.status_code == 403 and "The form expired" in forged.text
    opaque = desk.post(
        "/desk/login", data={"username": "eddie", "password": PASSWORD}, headers={"Origin": "null"}
    )
    assert opaque.status_code == 403


def test_session_cookie_is_strict_and_http_only(desk: TestClient) -> None:
    r = desk_login(desk, "eddie", PASSWORD, next="https://evil.example/")
    assert r.headers["location"] == "/desk"  # never an open redirect
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
    assert "path=/desk" in cookie


def test_posts_need_the_csrf_token_and_the_same_origin(desk: TestClient) -> None:
    token = login(desk, "eddie")
    form = {"action": "alert", "headline": "Road closed", "status": "actual", "intent": "submit"}
    assert desk.post("/desk/compose", data=form).status_code == 403
    assert desk.post("/desk/compose", data={**form, "csrf": "forged"}).status_code == 403
    r = desk.post(
        "/desk/compose",
        data={**form, "csrf": token},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403 and "another site" in r.text
    ok = desk.post("/desk/compose", data={**form, "csrf": token}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"].startswith("/desk/drafts/")


def test_roles_are_enforced_on_the_server(desk: TestClient, sqlite_store: Store) -> None:
    token = login(desk, "vera")
    assert desk.get("/desk/compose").status_code == 403
    r = desk.post("/desk/compose", data={"csrf": token, "headline": "x", "intent": "submit"})
    assert r.status_code == 403
    assert count(sqlite_store, drafts_t) == 0


def test_compose_shows_errors_and_previews(desk: TestClient) -> None:
    token = login(desk, "eddie")
    r = desk.post("/desk/compose", data={"csrf": token, "action": "alert", "headline": ""})
    assert r.status_code == 422 and "A headline is required" in r.text
    r = desk.post(
        "/desk/preview",
        data={
            "csrf": token,
            "action": "alert",
            "headline": "Road closed on Main Street",
            "status": "test",
            "geocodes": "UGC:MTZ014",
        },
    )
    assert r.status_code == 200
    assert "Name the area the codes describe" in r.text
    r = desk.post(
        "/desk/preview",
        headers={"X-CSRF-Token": token},
        data={"action": "alert", "headline": "Road closed on Main Street", "status": "test"},
    )
    assert 'data-channel="drills"' in r.text and 'data-channel="public"' not in r.text
    assert "[TEST] Road closed on Main Street" in r.text  # the renderer marks it, per channel
    assert "takes Actual notices only" in r.text


def test_retry_and_cancel_a_delivery_from_the_desk(desk: TestClient, sqlite_store: Store) -> None:
    cfg = config(DESK)
    p = {u.username: u for u in accounts.list_users(sqlite_store)}
    d = drafts.submit(
        sqlite_store, cfg, channels_for(cfg), p["eddie"], "alert", body(severity="minor"),
        thread_id=None, send_at=None, now=T0,
    )  # fmt: skip
    row = rows(sqlite_store, deliveries, deliveries.c.notice_id == d.notice_id)[0]
    token = login(desk, "eddie")
    r = desk.post(f"/desk/deliveries/{row.id}/cancel", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    assert rows(sqlite_store, deliveries, deliveries.c.id == row.id)[0].state == "cancelled"
    r = desk.post(
        f"/desk/deliveries/{row.id}/retry", data={"csrf": token, "back": "/desk"},
        follow_redirects=False,
    )  # fmt: skip
    assert "nothing%20to%20retry" in r.headers["location"]
    actions = [e.action for e in audit.entries(sqlite_store, audit.AuditFilter(actor="eddie"))]
    assert "cancel_delivery" in actions and "retry" not in actions


def test_a_changed_configuration_is_audited_without_secrets(sqlite_store: Store) -> None:
    first = config(DESK + '[channels.masto]\nkind = "mastodon"\ninstance = "https://m.example"\n'
                   'token = { env = "MASTO_TOKEN" }\n')  # fmt: skip
    said = audit.config_changed(sqlite_store, first, T0, actor="cli:ops", host="web-1")
    assert said is not None and said.startswith("first start")
    assert audit.config_changed(sqlite_store, first, T0, actor="cli:ops", host="web-1") is None
    second = config(
        DESK.replace('"moderate"', '"severe"')
        + '[channels.masto]\nkind = "mastodon"\ninstance = "https://m.example"\n'
        'token = { env = "OTHER_TOKEN" }\nvisibility = "unlisted"\n'
    )
    said = audit.config_changed(sqlite_store, second, T0, actor="cli:ops", host="web-2")
    assert said == (
        "changed: channels.masto.token.env, channels.masto.visibility, desk.approval_min_severity"
    )
    (entry,) = audit.entries(sqlite_store, audit.AuditFilter(action="config_change"), limit=1)
    assert entry.actor == "cli:ops" and entry.ip == "web-2" and entry.detail == said


def test_scheduling_from_the_form_in_the_desk_time_zone(sqlite_store: Store) -> None:
    cfg = config(DESK.replace("[desk]", '[desk]\ntimezone = "America/Denver"'))
    people(sqlite_store)
    client = TestClient(
        create_app(sqlite_store, cfg, channels_for(cfg)), base_url="https://alerts.example.org"
    )
    token = login(client, "eddie")
    later = datetime.now(UTC) + timedelta(days=2)
    local = later.astimezone(ZoneInfo("America/Denver")).strftime("%Y-%m-%dT%H:%M")
    r = client.post(
        "/desk/compose",
        data={
            "csrf": token, "action": "alert", "intent": "submit", "status": "actual",
            "severity": "minor", "headline": "Hydrant flushing on Saturday", "send_at": local,
        },
        follow_redirects=True,
    )  # fmt: skip
    assert r.status_code == 200 and "<strong>scheduled</strong>" in r.text
    (d,) = drafts.listing(sqlite_store, ("scheduled",))
    assert d.send_at == later.replace(second=0, microsecond=0)  # read in Denver time
    assert count(sqlite_store, notices) == 0
    assert "Hydrant flushing" in client.get("/desk/drafts").text


def test_the_preview_shows_what_x_charges(sqlite_store: Store) -> None:
    cfg = config(
        """
[channels.x]
kind = "x"
consumer_key = { env = "XK" }
consumer_secret = { env = "XK" }
access_token = { env = "XK" }
access_token_secret = { env = "XK" }
[[routes]]
channels = ["x"]
""",
    )
    import os

    os.environ["XK"] = "k"
    try:
        chans = channels_for(cfg)
    finally:
        del os.environ["XK"]
    pv = drafts.preview(sqlite_store, cfg, chans, "alert", body(web="https://example.org/a"), None)
    assert pv.channels[0].name == "x" and pv.cost == pytest.approx(0.2)  # a post with a URL
    pv = drafts.preview(sqlite_store, cfg, chans, "alert", body(), None)
    assert pv.cost > 0


def test_a_saved_template_is_offered_and_fills_the_form(desk: TestClient) -> None:
    token = login(desk, "eddie")
    form = {"csrf": token, "action": "alert", "intent": "save_template", "status": "actual",
            "headline": "Water main break on [street]", "severity": "moderate",
            "categories": "Infra"}  # fmt: skip
    assert desk.post("/desk/compose", data=form).status_code == 422  # no name given
    r = desk.post("/desk/compose", data={**form, "template_name": "Water main break"})
    assert r.status_code == 200 and "Saved as template" in r.text
    page = desk.get("/desk/compose")
    assert "?template=Water%20main%20break" in page.text
    filled = desk.get("/desk/compose", params={"template": "Water main break"}).text
    assert 'value="Water main break on [street]"' in filled
    assert "<option selected>moderate</option>" in filled


def test_password_checks_never_run_on_the_event_loop(
    desk: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Argon2 is slow on purpose; run on the loop, 60 failed logins stalled /healthz for 38 s."""
    where = where_it_runs(monkeypatch, accounts, "authenticate")
    login(desk, "eddie")
    r = desk_login(desk, "eddie", "wrong")
    assert r.status_code == 401
    assert where == [False, False]


def test_a_login_flood_never_starves_the_rest(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Security item 9: 40 concurrent failed logins held every thread of the pool all
    synchronous handlers share, and /healthz waited behind them (0.2 s became 13.4 s).
    Password checks run on threads of their own (here one, with two waiting); a login beyond
    that is refused at once (429), and /healthz answers while every check is held."""
    import re
    import threading

    from clarion.desk import passwords

    pools: list[passwords.PasswordPool] = []
    real_pool = passwords.PasswordPool

    def small_pool() -> passwords.PasswordPool:
        pools.append(real_pool(workers=1, waiting=2))
        return pools[-1]

    monkeypatch.setattr(passwords, "PasswordPool", small_pool)
    release, names = threading.Event(), []

    class Held:  # the real hasher, each check held until released
        def __init__(self, real: Any) -> None:
            self.real = real

        def verify(self, hash_: str, password: str) -> bool:
            names.append(threading.current_thread().name)
            assert release.wait(30)
            return bool(self.real.verify(hash_, password))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    monkeypatch.setattr(accounts, "_hasher", Held(accounts._hasher))
    cfg = config(DESK)
    people(sqlite_store)
    with TestClient(
        create_app(sqlite_store, cfg, channels_for(cfg)), base_url="https://alerts.example.org"
    ) as client:
        form = client.get("/desk/login").text
        token = re.search(r'name="csrf" value="([^"]+)"', form)
        assert token
        data = {"username": "eddie", "password": "wrong", "csrf": token.group(1)}
        codes: list[int] = []

        def attempt() -> None:
            codes.append(client.post("/desk/login", data=data).status_code)

        flood = [threading.Thread(target=attempt) for _ in range(41)]
        for t in flood:
            t.start()
        healthz: list[int] = []
        probe = threading.Thread(target=lambda: healthz.append(client.get("/healthz").status_code))
        probe.start()
        probe.join(20)  # on the old code it waited for the checks it was queued behind
        assert healthz == [200], "healthz waited behind the password checks"
        assert len(pools) == 1
        for _ in range(2000):  # the three admitted have reached the pool (bounded wait)
            if len(codes) == 38:
                break
            release.wait(0.01)
        assert sorted(codes) == [429] * 38  # refused at once, not queued
        release.set()
        for t in flood:
            t.join(30)
    assert sorted(codes) == [401] * 3 + [429] * 38
    assert names and all(n.startswith("clarion-passwords") for n in names)


def test_any_sources_notice_can_be_followed_up_from_the_desk() -> None:
    """A source may say more than the desk's form allows (a 700-character headline, 150 areas,
    a `javascript:` link): the follow-up form is pre-drafted within the limits, never a 500."""
    from clarion.model import Area, Info, NameValue, Notice

    huge = Notice(
        kind="cap",
        identifier="x",
        sender="s",
        sent=T0,
        thread_key="k",
        infos=[
            Info(
                headline="H" * 700,
                description="d" * 25_000,
                categories=[f"c{i}" for i in range(30)],
                web="javascript:alert(1)",
                areas=[
                    Area(description="", geocodes=[NameValue(name="UGC", value="MTZ001")])
                    for _ in range(150)
                ],
            )
        ],
    )
    for action in ("update", "correction", "cancel"):
        b = drafts.prefill(action, huge)
        assert len(b.headline) == 500 and b.headline.endswith("…")
        assert b.web is None and len(b.areas) == 100 and len(b.categories) == 12
        assert b.areas[0].description == "Area" and b.areas[0].geocodes[0].value == "MTZ001"


def test_composing_and_approving_run_off_the_event_loop(
    desk: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rendering a notice for every channel is CPU work: it never runs on the loop."""
    where = where_it_runs(monkeypatch, drafts, "submit")
    token = login(desk, "eddie")
    form = {"csrf": token, "action": "alert", "intent": "submit", "headline": "Road closed",
            "status": "actual", "severity": "minor"}  # fmt: skip
    r = desk.post("/desk/compose", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert where == [False]


def test_rejected_items_show_on_the_desk(sqlite_store: Store) -> None:
    """An item a source could not read is listed beside the source, with its reason."""
    from clarion.seen import record_rejections
    from clarion.sources.base import Rejected

    cfg = config(DESK + '[sources.nws]\nkind = "nws"\nuser_agent = "tests (a@b.c)"\n')
    people(sqlite_store)
    record_rejections(
        sqlite_store,
        "nws",
        [Rejected("urn:oid:bad.1", "invalid_date", "feature 3 [urn:oid:bad.1]: sent '9999-…'")],
        T0,
    )
    client = TestClient(
        create_app(sqlite_store, cfg, channels_for(cfg)), base_url=cfg.clarion.public_url
    )  # type: ignore[arg-type]
    desk_login(client, "vera", PASSWORD)
    live = client.get("/desk/live").text
    assert "urn:oid:bad.1" in live and "invalid_date" in live


def test_the_live_stream_names_each_new_notice_once(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notice committed between the stream's two reads (what changed, then which notices
    are new) is named once: the stream once resumed from the first read's newest id and named
    it again on the next change (an arrival listed twice in CI)."""
    import asyncio
    import json

    from clarion.web import desk as desk_web

    cfg = config(DESK)
    channels = channels_for(cfg)
    real = desk_web.desk_reads.fingerprint
    calls = 0

    def fingerprint(conn):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        seen = real(conn)
        if calls == 2:  # something else changed; the notice commits just after this read
            ingest_bytes(sqlite_store, cfg, channels, demo_cap(0))
            return (*seen[:1], ("changed",), *seen[2:])
        if calls == 3:  # one more change: the draft table, a delivery, anything
            return (*seen, "again")
        return seen

    monkeypatch.setattr(desk_web.desk_reads, "fingerprint", fingerprint)

    class Request:
        async def is_disconnected(self) -> bool:
            return calls >= 3

    async def read() -> list[bytes]:
        return [chunk async for chunk in desk_web._changes(sqlite_store, Request(), 0)]  # type: ignore[arg-type]

    chunks = asyncio.run(read())
    named = [json.loads(c.split(b"data: ", 1)[1]) for c in chunks if c.startswith(b"event: notice")]
    assert len(named) == 1, named
    assert sum(c.startswith(b"event: change") for c in chunks) == 2


def test_after_a_burst_the_stream_names_the_newest_notices(sqlite_store: Store) -> None:
    """The desk lists the last arrivals: after a burst it names the newest, oldest first,
    not the burst's first few (which would trickle in on later changes as if new)."""
    from clarion.demo import STEPS
    from clarion.store import desk as desk_reads

    cfg = config(DESK)
    channels = channels_for(cfg)
    for n in range(len(STEPS)):
        ingest_bytes(sqlite_store, cfg, channels, demo_cap(n))
    ids = [r.id for r in rows(sqlite_store, notices, order=notices.c.id)]
    assert len(ids) >= 3
    with sqlite_store.read() as conn:
        assert [r.id for r in desk_reads.notices_after(conn, 0, limit=2)] == ids[-2:]
        assert [r.id for r in desk_reads.notices_after(conn, ids[-2], limit=2)] == ids[-1:]


@pytest.mark.postgres
def test_the_live_stream_names_a_notice_committed_after_a_later_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL an ingest still running commits a lower notice id after another ingest's
    higher one was named: the desk's "Arriving now" never showed it. Notices are now named in
    id order, the list held back while an ingest that may commit a lower id runs (and read
    again at every poll then, though nothing else changed)."""
    import asyncio
    import json
    import threading

    from clarion.store import open_store
    from clarion.web import desk as desk_web
    from tests.conftest import pg_schema_url

    urls = pg_schema_url()
    store = open_store(next(urls))
    try:
        cfg = config(DESK)
        channels = channels_for(cfg)
        inside, release = threading.Event(), threading.Event()

        def slow(conn: object, result: object) -> None:
            inside.set()
            assert release.wait(10)

        first = threading.Thread(
            target=lambda: ingest_bytes(store, cfg, channels, demo_cap(0), "a", within=slow)
        )
        polls = 0

        class Request:
            async def is_disconnected(self) -> bool:
                nonlocal polls
                polls += 1
                if polls == 4:  # the stream has read the store twice with b's notice in it
                    release.set()
                    first.join(10)
                return polls > 40

        async def read() -> list[dict[str, object]]:
            named: list[dict[str, object]] = []
            stream = desk_web._changes(store, Request(), 0.01)  # type: ignore[arg-type]
            assert (await anext(stream)).startswith(b": connected")
            first.start()
            assert inside.wait(10)  # source a's notice is inserted, not committed
            ingest_bytes(store, cfg, channels, demo_cap(0), "b")  # committed: a higher id
            async for chunk in stream:
                if chunk.startswith(b"event: notice"):
                    named.append(json.loads(chunk.split(b"data: ", 1)[1]))
                    if len(named) == 2:
                        break
            return named

        named = asyncio.run(read())
        by_source = {n.source: n.thread_id for n in rows(store, notices)}
        assert [n["thread"] for n in named] == [by_source["a"], by_source["b"]], named
    finally:
        store.close()
        urls.close()
