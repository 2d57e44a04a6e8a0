"""The outbox on both backends: leases, exclusivity, order, reclaim after a crash, audit trail."""

from __future__ import annotations

import threading
from datetime import timedelta

from clarion.delivery import outbox
from clarion.store import Store
from tests.helpers import (
    NOW,
    channels_for,
    config,
    deliveries,
    delivery_events,
    demo_cap,
    ingest_bytes,
    rows,
)

ONE = """
[channels.preview]
kind = "preview"
[[routes]]
channels = ["preview"]
"""


def _queue_many(store: Store, n: int) -> None:
    cfg = config(ONE)
    chans = channels_for(cfg)
    outbox.ensure_channels(store, {"preview": "preview"}, NOW)
    base = demo_cap(0)
    for i in range(n):
        ingest_bytes(
            store, cfg, chans, base.replace(b"MT</identifier>", f"MT-{i}</identifier>".encode())
        )


def test_claim_is_exclusive_until_the_lease_expires(store: Store) -> None:
    _queue_many(store, 3)
    a = outbox.claim(store, "worker-a", NOW, lease_seconds=30, limit=10)
    assert len(a) == 3 and all(not c.reclaimed and c.attempts == 1 for c in a)
    assert outbox.claim(store, "worker-b", NOW + timedelta(seconds=29), 30) == []
    b = outbox.claim(store, "worker-b", NOW + timedelta(seconds=31), 30)
    assert {c.id for c in b} == {c.id for c in a}
    assert all(c.reclaimed and c.attempts == 2 for c in b)
    # worker-a comes back from the dead: its results are refused, worker-b owns them now.
    assert not outbox.mark_sent(store, a[0], "worker-a", NOW, "x", None, {})
    assert outbox.mark_sent(store, b[0], "worker-b", NOW, "y", None, {})
    events = rows(
        store, delivery_events, delivery_events.c.delivery_id == b[0].id, order=delivery_events.c.id
    )
    assert [(e.from_state, e.to_state) for e in events] == [
        (None, "pending"),
        ("pending", "sending"),
        ("sending", "sending"),
        ("sending", "sent"),
    ]
    assert "expired mid-send" in events[2].detail


def test_heartbeat_keeps_the_lease(store: Store) -> None:
    _queue_many(store, 1)
    [c] = outbox.claim(store, "w", NOW, 10)
    assert outbox.heartbeat(store, "w", [c.id], NOW + timedelta(seconds=9), 10) == 1
    assert outbox.claim(store, "other", NOW + timedelta(seconds=15), 10) == []
    assert outbox.heartbeat(store, "intruder", [c.id], NOW, 10) == 0


def test_versions_go_out_in_order(store: Store) -> None:
    cfg = config(ONE)
    chans = channels_for(cfg)
    ingest_bytes(store, cfg, chans, demo_cap(0))
    [v1] = outbox.claim(store, "w", NOW, 30)
    ingest_bytes(store, cfg, chans, demo_cap(1))  # v1 is in flight: it cannot be superseded
    assert outbox.claim(store, "w2", NOW, 30) == []  # v2 waits for v1
    outbox.mark_sent(store, v1, "w", NOW, "post-1", None, {})
    [v2] = outbox.claim(store, "w2", NOW, 30)
    assert v2.version == 2
    latest, first = outbox.previous_receipts(store, v2)
    assert latest is not None and first is not None and latest["post_id"] == "post-1"


def test_held_channel_is_not_claimed(store: Store) -> None:
    _queue_many(store, 2)
    outbox.set_channel_state(store, "preview", "needs_reauth", "token revoked", NOW)
    assert outbox.claim(store, "w", NOW, 30) == []
    outbox.set_channel_state(store, "preview", "active", None, NOW)
    # A 429's pause, set by any worker, holds the channel for every worker until it ends.
    from clarion.store import limits

    limits.pause(store, "preview", NOW + timedelta(seconds=30), NOW)
    assert outbox.claim(store, "w", NOW + timedelta(seconds=29), 30) == []
    assert len(outbox.claim(store, "w", NOW + timedelta(seconds=31), 30)) == 2


def test_concurrent_claimers_never_share_a_row(store: Store) -> None:
    _queue_many(store, 60)
    got: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        mine = got.setdefault(name, [])
        try:
            while True:
                batch = outbox.claim(store, name, NOW, 300, limit=3)
                if not batch:
                    return
                for c in batch:
                    mine.append(c.id)
                    outbox.mark_sent(store, c, name, NOW, f"p-{c.id}", None, {})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    all_ids = [i for ids in got.values() for i in ids]
    assert len(all_ids) == 60 and len(set(all_ids)) == 60


def test_a_claim_reads_the_due_queue_in_order_and_stops_at_its_limit(sqlite_store: Store) -> None:
    """Each state's due deliveries are read by walking the (state, next_attempt_at) index in
    order, to the claim's limit: one query over every state, ordered across them, read and
    sorted the whole backlog on every claim (an OR of two index searches, then a sort), so a
    claim slowed as the queue grew. The claim still takes the oldest first, whatever the state."""
    from typing import Any

    from sqlalchemy import event

    cfg = config()
    chans = channels_for(cfg)
    ident = b"NOAA-NWS-ALERTS-MT20100830100700TFXFlashFloodWatchTFX20100830180000MT"
    for i in range(6):
        ingest_bytes(sqlite_store, cfg, chans, demo_cap(0).replace(ident, ident + b"-%d" % i))
    due: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        if "NOT (EXISTS" in statement:
            due.append((statement, params))

    event.listen(sqlite_store.engine, "before_cursor_execute", record)
    try:
        first = outbox.claim(sqlite_store, "w1", NOW, 60, limit=2)
    finally:
        event.remove(sqlite_store.engine, "before_cursor_execute", record)
    with sqlite_store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        for statement, params in due:
            plan = [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
            assert any(
                "USING INDEX ix_deliveries_state_next_attempt_at (state=?" in p for p in plan
            )
            assert not any(
                "MULTI-INDEX OR" in p or p == "USE TEMP B-TREE FOR ORDER BY" for p in plan
            )
    # Oldest first across states: a delivery whose lease ran out (sending) is older than the
    # pending ones queued after it, and is taken back first.
    later = NOW + timedelta(seconds=120)
    again = outbox.claim(sqlite_store, "w2", later, 60, limit=3)
    assert [c.id for c in again][:2] == [c.id for c in first]
    assert all(c.reclaimed for c in again[:2]) and not again[2].reclaimed


def test_marking_sent_stores_what_core_stores(store: Store) -> None:
    """`mark_sent` runs driver SQL (see `clarion.store.driver`), its values bound by the columns'
    own types: a time is stored exactly as Core stores it (Core finds the row by comparing
    with the same time; on SQLite that compares the stored text), the receipt as JSON, the
    event with its move, and the channel's count once per delivery."""
    from sqlalchemy import select

    from clarion.store.schema import channels, deliveries

    _queue_many(store, 2)
    got = outbox.claim(store, "w1", NOW, 60, limit=2)
    times = [NOW + timedelta(seconds=5), NOW + timedelta(seconds=6, microseconds=250)]
    for c, at in zip(got, times, strict=True):
        assert outbox.mark_sent(store, c, "w1", at, f"post-{c.id}", None, {"cost": 0.5, "é": [1]})
    with store.read() as conn:
        for c, at in zip(got, times, strict=True):
            found = conn.execute(
                select(deliveries).where(deliveries.c.sent_at == at, deliveries.c.updated_at == at)
            ).all()
            assert [r.id for r in found] == [c.id]
            row = found[0]
            assert (row.state, row.receipt_id, row.receipt_url) == ("sent", f"post-{c.id}", None)
            assert row.receipt == {"cost": 0.5, "é": [1]} and row.sent_at == at
            assert row.lease_owner is None and row.lease_expires_at is None
        ch = conn.execute(select(channels).where(channels.c.name == "preview")).one()
    assert ch.sent_count == 2 and ch.last_sent_at == times[1]
    sent = [e for e in rows(store, delivery_events) if e.to_state == "sent"]
    assert sorted((e.delivery_id, e.from_state, e.attempt, e.worker) for e in sent) == sorted(
        (c.id, "sending", 1, "w1") for c in got
    )
    assert {e.at for e in sent} == set(times) and all(
        e.detail.startswith("posted as") for e in sent
    )
    # Once sent, a second outcome is refused (the row is no longer this worker's to finish).
    assert not outbox.mark_sent(store, got[0], "w1", NOW, "again", None, {})
    assert rows(store, channels)[0].sent_count == 2


def test_driver_sql_names_a_type_for_every_value() -> None:
    import pytest

    from clarion.store.driver import DriverSQL

    with pytest.raises(AssertionError, match="without a type"):
        DriverSQL("UPDATE channels SET state = :state WHERE name = :name", {"name": None})._prepare(
            type("D", (), {"paramstyle": "named"})()
        )


def test_whatever_a_platform_answers_is_recorded_and_never_posted_again(store: Store) -> None:
    """A post id of 600 characters (a server's bug or malice), holding a NUL and half a
    surrogate pair, and a link with a NUL: on PostgreSQL none could be recorded, so the post,
    made, stayed `sending`, its lease ran out and it was posted again, and again. Now it is
    recorded (the NUL and the half pair as U+FFFD) and never claimed again."""
    _queue_many(store, 1)
    [c] = outbox.claim(store, "w1", NOW, 60)
    post_id = "p" * 600 + "\x00" + "\ud800" + "é"
    assert outbox.mark_sent(store, c, "w1", NOW, post_id, "https://x.example/\x00", {"n": 1})
    [d] = rows(store, deliveries)
    assert d.state == "sent" and d.receipt_id == "p" * 600 + "\ufffd\ufffdé"
    assert d.receipt_url == "https://x.example/\ufffd"
    assert outbox.claim(store, "w2", NOW + timedelta(hours=1), 60) == []


def test_an_operators_retry_goes_through_the_state_machine(store: Store) -> None:
    """Security item 13: the operator's retry read the state, then wrote `pending` whatever
    the row held by then: a worker that claimed the delivery in between (it is `sending`)
    had it queued again under its feet, and it went out twice. The move is checked against
    the state machine and written only from the state it was read in."""
    import sqlalchemy as sa

    from clarion.delivery.states import DeliveryState as S

    _queue_many(store, 2)
    [c] = outbox.claim(store, "worker-a", NOW, lease_seconds=30, limit=1)
    assert outbox.operator_retry(store, c.id, NOW, "ops") == "it is sending: nothing to retry"
    [waiting] = [d for d in rows(store, deliveries) if d.state == S.PENDING]
    if not store.is_sqlite:  # a worker claims it between the retry's read and its write
        other = sa.create_engine(store.engine.url, poolclass=sa.pool.NullPool)
        fired: list[bool] = []

        @sa.event.listens_for(store.engine, "before_cursor_execute")
        def claim_first(conn, cursor, statement, params, context, many):  # type: ignore[no-untyped-def]
            if statement.lstrip().upper().startswith("UPDATE DELIVERIES") and not fired:
                fired.append(True)
                with other.begin() as c2:
                    c2.execute(
                        sa.update(deliveries)
                        .where(deliveries.c.id == waiting.id)
                        .values(state=S.SENDING, lease_owner="worker-b")
                    )

        try:
            why = outbox.operator_retry(store, waiting.id, NOW, "ops")
        finally:
            sa.event.remove(store.engine, "before_cursor_execute", claim_first)
            other.dispose()
        assert fired and why == "it is being sent right now"
        [after] = rows(store, deliveries, deliveries.c.id == waiting.id)
        assert (after.state, after.lease_owner) == ("sending", "worker-b")
    else:  # one writer at a time: the read and the write cannot be split
        assert outbox.operator_retry(store, waiting.id, NOW, "ops") is None
