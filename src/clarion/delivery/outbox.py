"""The outbox: claiming due deliveries under a lease, and recording every state change.

States: pending → sending → sent | retry_wait | failed | superseded | cancelled.
A claim moves rows to `sending` with a lease (owner + expiry) that the worker's heartbeat
extends while it sends. A row whose lease expired (its worker died) can be claimed again; the
resend reuses the delivery id as the platform's idempotency key, so it cannot double-post where
the platform honours one, and is flagged for an operator where it does not.

On PostgreSQL the claim is `SELECT … FOR UPDATE SKIP LOCKED`, so many workers never take the same
row; on SQLite the write transaction (BEGIN IMMEDIATE) makes the claim the only writer.
Every function that changes a row also appends a `delivery_events` row: the audit trail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import (
    Connection,
    Text,
    and_,
    bindparam,
    cast,
    exists,
    insert,
    not_,
    select,
    text,
    update,
)
from sqlalchemy.orm import aliased

from clarion.delivery.states import ACTIVE, TERMINAL, WAITING, DeliveryState, check
from clarion.delivery.states import DeliveryState as S
from clarion.model import Notice, storable
from clarion.store import Store
from clarion.store.changes import POSTS, touch
from clarion.store.driver import DriverInsert, DriverSQL
from clarion.store.schema import channels, deliveries, delivery_events, notices, rate_buckets

__all__ = ["ACTIVE", "OUTBOX_CHANNEL", "TERMINAL", "WAITING", "DeliveryState"]
OUTBOX_CHANNEL = "clarion_outbox"  # LISTEN/NOTIFY: deliveries were queued

# The statements every delivery runs, built once (see clarion.store.queries): building them
# per call cost more than the database running them.
_d = deliveries
_INSERT_EVENT = insert(delivery_events)
_older = aliased(deliveries)


def _due_query(state: S, some_channels: bool, locked: bool) -> Any:
    """Deliveries in `state` that are due (waiting ones whose time came; `sending` ones whose
    lease ran out), oldest first, as many as `limit`.

    One state per query, so that the database walks the (state, next_attempt_at) index in
    order and stops at `limit`: one query for every state, ordered across them, read and
    sorted every due delivery (and checked each one's older versions) on every claim — 9 ms a
    claim with 800 queued, growing with the backlog."""
    if state is S.SENDING:
        due = and_(_d.c.state == state.value, _d.c.lease_expires_at < bindparam("now"))
    else:
        due = and_(_d.c.state == state.value, _d.c.next_attempt_at <= bindparam("now"))
    q = select(_d.c.id, _d.c.channel, _d.c.next_attempt_at, _d.c.notice_id).where(
        due,
        # A thread's versions go out in order on each channel: never overtake an unfinished one.
        not_(
            exists().where(
                _older.c.thread_id == _d.c.thread_id,
                _older.c.channel == _d.c.channel,
                _older.c.version < _d.c.version,
                _older.c.state.in_(ACTIVE),
            )
        ),
        # Not a channel held for everyone (waiting for re-authorization, or paused by a 429
        # any worker met): read here, in the claim's own statement, rather than first by two
        # more statements and then passed in as a list to expand.
        _d.c.channel.not_in(select(channels.c.name).where(channels.c.state != "active")),
        _d.c.channel.not_in(
            select(rate_buckets.c.channel).where(rate_buckets.c.paused_until > bindparam("now"))
        ),
    )
    if some_channels:
        q = q.where(_d.c.channel.in_(bindparam("wanted", expanding=True)))
    q = q.order_by(_d.c.next_attempt_at, _d.c.notice_id).limit(bindparam("limit"))
    return q.with_for_update(skip_locked=True, of=_d) if locked else q


# (only some channels, FOR UPDATE SKIP LOCKED on PostgreSQL) → the claim's first queries, one
# per state a due delivery can be in
_DUE = {
    (some, locked): [
        _due_query(state, some, locked) for state in (S.PENDING, S.RETRY_WAIT, S.SENDING)
    ]
    for some in (True, False)
    for locked in (True, False)
}
_CLAIMED_ROWS = (
    select(
        # What `Claimed` holds, and no more: each datetime read is a string parsed on SQLite.
        _d.c.id,
        _d.c.notice_id,
        _d.c.thread_id,
        _d.c.channel,
        _d.c.version,
        _d.c.msg_type,
        _d.c.state,
        _d.c.attempts,
        _d.c.lease_owner,
        _d.c.receipt_id,
        _d.c.receipt,
        _d.c.cost,
        _d.c.severity_rank,
        # The payload as its stored JSON text, decoded only if something reads it: a webhook
        # posts it as it is (decoding ~7 KB of JSON and encoding it again was a tenth of a
        # webhook delivery's time).
        cast(_d.c.payload, Text).label("payload_json"),
        # The notice as its JSON text: the worker validates it straight from JSON (pydantic's
        # own parser), instead of the driver decoding it and pydantic validating the dict.
        cast(notices.c.data, Text).label("notice_json"),
        notices.c.original,
        notices.c.ancestors,
        notices.c.over_at,
    )
    .select_from(_d.join(notices, notices.c.id == _d.c.notice_id))
    .where(_d.c.id.in_(bindparam("ids", expanding=True)))
)
# SET columns come from the parameters (every key that names a column); the WHERE's own
# parameters are named apart from the columns.
_TAKE = (
    update(_d)
    .where(_d.c.id.in_(bindparam("ids", expanding=True)))
    .values(attempts=_d.c.attempts + 1)
)
_FINISH = update(_d).where(
    _d.c.id == bindparam("d_id"),
    _d.c.state == S.SENDING,
    _d.c.lease_owner == bindparam("d_owner"),
)


# Marking a delivery sent is three statements a delivery, and queueing them most of a poll's
# writes: both run as driver SQL (see `clarion.store.driver` for why not Core).
_INSERT_DELIVERIES = DriverInsert(deliveries)
_INSERT_EVENTS = DriverInsert(delivery_events)


_MARK_SENT = DriverSQL(
    f"""UPDATE deliveries SET state = '{S.SENT.value}', updated_at = :at, lease_owner = NULL,
    lease_expires_at = NULL, receipt_id = :post_id, receipt_url = :url, receipt = :receipt,
    sent_at = :at, last_error = NULL, error_kind = NULL
    WHERE id = :id AND state = '{S.SENDING.value}' AND lease_owner = :worker""",
    {
        "at": deliveries.c.sent_at.type,
        "post_id": deliveries.c.receipt_id.type,
        "url": deliveries.c.receipt_url.type,
        "receipt": deliveries.c.receipt.type,
        "id": deliveries.c.id.type,
        "worker": deliveries.c.lease_owner.type,
    },
)
_SENT_EVENT = DriverSQL(
    f"""INSERT INTO delivery_events (delivery_id, at, from_state, to_state, attempt, worker,
    detail) VALUES (:id, :at, '{S.SENDING.value}', '{check(S.SENDING, S.SENT).value}',
    :attempt, :worker, :detail)""",
    {
        "id": delivery_events.c.delivery_id.type,
        "at": delivery_events.c.at.type,
        "attempt": delivery_events.c.attempt.type,
        "worker": delivery_events.c.worker.type,
        "detail": delivery_events.c.detail.type,
    },
)
_COUNT_SENT = DriverSQL(
    "UPDATE channels SET sent_count = sent_count + 1, last_sent_at = :at WHERE name = :channel",
    {"at": channels.c.last_sent_at.type, "channel": channels.c.name.type},
)


@dataclass(frozen=True)
class Claimed:
    id: str
    notice_id: int
    thread_id: int
    channel: str
    version: int
    msg_type: str
    payload_json: str  # the rendered payload as stored (`payload` decodes it)
    attempts: int  # including this one
    notice_json: str  # the stored notice (Notice.model_validate_json reads it)
    original: bytes | None
    reclaimed: bool  # the previous attempt's worker died mid-send: the outcome is unknown
    cost: float = 0.0
    severity_rank: int = 0
    # Parts of a split thread already posted by an earlier attempt (see `checkpoint`).
    progress: dict[str, Any] | None = None
    # The notices this one continues (None: stored before branches, a linear thread).
    ancestors: list[int] | None = None
    over_at: datetime | None = None  # the notice's (`Notice.over_at`)

    @cached_property
    def payload(self) -> dict[str, Any]:
        """The rendered payload (decoded once, when first read)."""
        value = json.loads(self.payload_json)
        assert isinstance(value, dict), "a delivery's payload is a JSON object"
        return value

    @property
    def as_new(self) -> Any:
        """The payload's `as_new` (see `Rendered`), without decoding a payload that has none:
        a key is stored as its name in quotes (neither Python's JSON encoder nor PostgreSQL
        escapes ASCII letters), so a payload whose text lacks `"as_new"` has no such key."""
        if '"as_new"' not in self.payload_json:
            return None
        return self.payload.get("as_new")

    def notice(self) -> Notice:
        """The notice being delivered, with its original bytes."""
        return Notice.model_validate_json(self.notice_json).model_copy(
            update={"original": self.original}
        )


def _event(
    conn: Connection,
    delivery_id: str,
    now: datetime,
    from_state: str | None,
    to_state: str,
    attempt: int,
    worker: str | None,
    detail: str | None,
) -> None:
    """Record one move of a delivery (checked against `states.MOVES`: the event log never
    shows a move the state machine does not allow)."""
    touch(conn, POSTS)  # the notice pages show each delivery's state
    conn.execute(
        _INSERT_EVENT,
        {
            "delivery_id": delivery_id,
            "at": now,
            "from_state": from_state,
            "to_state": check(from_state, to_state).value,
            "attempt": attempt,
            "worker": worker,
            "detail": detail,
        },
    )


def claim(
    store: Store,
    worker: str,
    now: datetime,
    lease_seconds: float,
    limit: int = 10,
    only_channels: list[str] | None = None,
    at_most: Mapping[str, int] | None = None,
) -> list[Claimed]:
    """Claim up to `limit` due deliveries for `worker`, oldest first; of a channel named in
    `at_most`, no more than that many (the parts of a fan-out are left for other workers)."""
    with store.write() as conn:
        params: dict[str, Any] = {"now": now, "limit": limit}
        if only_channels is not None:
            params["wanted"] = sorted(only_channels)
        due = [
            row
            for query in _DUE[(only_channels is not None, not store.is_sqlite)]
            for row in conn.execute(query, params)
        ]
        due.sort(key=lambda r: (r.next_attempt_at, r.notice_id))
        del due[limit:]
        if at_most:
            taken: dict[str, int] = {}
            kept = []
            for r in due:
                cap = at_most.get(r.channel)
                if cap is not None and taken.get(r.channel, 0) >= cap:
                    continue  # not taken (on PostgreSQL its row lock ends with this commit)
                taken[r.channel] = taken.get(r.channel, 0) + 1
                kept.append(r)
            due = kept
        ids = [r.id for r in due]
        if not ids:
            return []
        rows = conn.execute(_CLAIMED_ROWS, {"ids": ids}).all()
        expires = now + timedelta(seconds=lease_seconds)
        # Every row taken in one statement, and every event in one more.
        touch(conn, POSTS)
        conn.execute(
            _TAKE,
            {
                "ids": [r.id for r in rows],
                "state": S.SENDING.value,
                "lease_owner": worker,
                "lease_expires_at": expires,
                "updated_at": now,
            },
        )
        conn.execute(
            _INSERT_EVENT,
            [
                {
                    "delivery_id": r.id,
                    "at": now,
                    "from_state": r.state,
                    "to_state": check(r.state, S.SENDING).value,
                    "attempt": r.attempts + 1,
                    "worker": worker,
                    "detail": (
                        f"lease of {r.lease_owner} expired mid-send; outcome unknown, resending"
                        if r.state == S.SENDING
                        else None
                    ),
                }
                for r in rows
            ],
        )
        out = []
        for r in rows:
            reclaimed = r.state == S.SENDING
            out.append(
                Claimed(
                    id=r.id,
                    notice_id=r.notice_id,
                    thread_id=r.thread_id,
                    channel=r.channel,
                    version=r.version,
                    msg_type=r.msg_type,
                    payload_json=r.payload_json,
                    attempts=r.attempts + 1,
                    notice_json=r.notice_json,
                    original=r.original,
                    reclaimed=reclaimed,
                    cost=float(r.cost or 0.0),
                    severity_rank=int(r.severity_rank or 0),
                    progress=r.receipt if r.receipt_id is None else None,
                    ancestors=r.ancestors,
                    over_at=r.over_at,
                )
            )
        out.sort(key=lambda c: ids.index(c.id))
        return out


def heartbeat(
    store: Store, worker: str, ids: list[str], now: datetime, lease_seconds: float
) -> int:
    """Extend the lease on rows this worker still holds; returns how many it still holds."""
    if not ids:
        return 0
    with store.write() as conn:
        res = conn.execute(
            update(deliveries)
            .where(
                deliveries.c.id.in_(ids),
                deliveries.c.lease_owner == worker,
                deliveries.c.state == S.SENDING,
            )
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        )
        return int(res.rowcount)


def checkpoint(store: Store, c: Claimed, worker: str, progress: dict[str, Any]) -> bool:
    """Record, mid-send, what has been posted so far (the parts of a thread), so a later
    attempt carries on after them instead of posting them again. Only under this worker's
    lease; kept in the receipt column, which holds the final receipt once sent."""
    with store.write() as conn:
        res = conn.execute(
            update(deliveries)
            .where(
                deliveries.c.id == c.id,
                deliveries.c.state == S.SENDING,
                deliveries.c.lease_owner == worker,
            )
            .values(receipt=progress)
        )
        return res.rowcount == 1


def _finish(
    conn: Connection,
    c: Claimed,
    worker: str,
    now: datetime,
    state: str,
    detail: str | None,
    **values: Any,
) -> bool:
    res = conn.execute(
        _FINISH,
        {
            "d_id": c.id,
            "d_owner": worker,
            "state": str(state),
            "updated_at": now,
            "lease_owner": None,
            "lease_expires_at": None,
            **values,
        },
    )
    if res.rowcount != 1:
        return False  # the lease was lost to another worker, which now owns the outcome
    _event(conn, c.id, now, S.SENDING, state, c.attempts, worker, detail)
    return True


def mark_sent(
    store: Store,
    c: Claimed,
    worker: str,
    now: datetime,
    post_id: str,
    url: str | None,
    receipt: dict[str, Any],
) -> bool:
    """The delivery was posted: record its receipt, its event and the channel's count, in one
    transaction, if this worker still holds its lease (driver SQL: see `clarion.store.driver`).

    The post is made: whatever the platform answered must be recordable, or the delivery stays
    `sending`, its lease runs out and it is posted again. A NUL or half a surrogate pair in
    the id or link (no database text holds either) is recorded as U+FFFD."""
    # str(): a channel that hands back a number still has its post recorded.
    post_id, url = storable(str(post_id)), storable(url) if url is not None else None
    with store.write() as conn:
        held = {"id": c.id, "worker": worker, "at": now}
        if _MARK_SENT(conn, {**held, "post_id": post_id, "url": url, "receipt": receipt}) != 1:
            return False  # the lease was lost to another worker, which now owns the outcome
        touch(conn, POSTS)  # the notice pages show each delivery's state
        _SENT_EVENT(conn, {**held, "attempt": c.attempts, "detail": f"posted as {post_id}"})
        _COUNT_SENT(conn, {"at": now, "channel": c.channel})
        return True


def mark_retry(
    store: Store,
    c: Claimed,
    worker: str,
    now: datetime,
    at: datetime,
    error: str,
    kind: str,
    count_attempt: bool = True,
) -> bool:
    with store.write() as conn:
        values: dict[str, Any] = {"next_attempt_at": at, "last_error": error, "error_kind": kind}
        if not count_attempt:
            values["attempts"] = c.attempts - 1
        return _finish(
            conn,
            c,
            worker,
            now,
            S.RETRY_WAIT,
            f"{kind}: {error}; next attempt at {at.isoformat(timespec='seconds')}",
            **values,
        )


def mark_failed(
    store: Store, c: Claimed, worker: str, now: datetime, error: str, kind: str
) -> bool:
    with store.write() as conn:
        ok = _finish(
            conn, c, worker, now, S.FAILED, f"{kind}: {error}", last_error=error, error_kind=kind
        )
        if ok:
            conn.execute(
                update(channels)
                .where(channels.c.name == c.channel)
                .values(failed_count=channels.c.failed_count + 1, last_error=error)
            )
        return ok


def mark_cancelled(store: Store, c: Claimed, worker: str, now: datetime, why: str) -> bool:
    with store.write() as conn:
        return _finish(conn, c, worker, now, S.CANCELLED, why)


def hold_for_reauth(store: Store, c: Claimed, worker: str, now: datetime, error: str) -> bool:
    """The credential failed: the channel waits for an operator, and the delivery with it."""
    with store.write() as conn:
        ok = _finish(
            conn,
            c,
            worker,
            now,
            S.PENDING,
            f"held: {error}",
            attempts=c.attempts - 1,
            last_error=error,
            error_kind="auth",
            next_attempt_at=now,
        )
        conn.execute(
            update(channels)
            .where(channels.c.name == c.channel)
            .values(
                state="needs_reauth", state_reason=error, state_changed_at=now, last_error=error
            )
        )
        return ok


def previous_receipts(
    store: Store, c: Claimed
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(latest, first) sent delivery on this channel of the messages this one continues: a
    reply threads under its own branch of the story (an NWS segment's cancel under that
    segment, not under a sibling's post)."""
    if c.ancestors == []:  # it continues nothing: a new story has nothing to reply under
        return None, None
    d = deliveries
    with store.read() as conn:
        base = select(d.c.receipt_id, d.c.receipt_url, d.c.receipt).where(
            d.c.thread_id == c.thread_id,
            d.c.channel == c.channel,
            d.c.state == S.SENT,
            d.c.version < c.version,
        )
        if c.ancestors is not None:
            base = base.where(d.c.notice_id.in_(c.ancestors))
        latest = conn.execute(base.order_by(d.c.version.desc()).limit(1)).first()
        first = conn.execute(base.order_by(d.c.version.asc()).limit(1)).first()
    return _receipt_dict(latest), _receipt_dict(first)


def _receipt_dict(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"post_id": row.receipt_id, "url": row.receipt_url, "extra": row.receipt or {}}


def ensure_channels(store: Store, kinds: dict[str, str], now: datetime) -> None:
    """Make sure every configured channel has its row (state, counters)."""
    with store.write() as conn:
        have = {r.name for r in conn.execute(select(channels.c.name))}
        for name, kind in kinds.items():
            if name not in have:
                conn.execute(
                    insert(channels).values(
                        name=name,
                        kind=kind,
                        state="active",
                        state_changed_at=now,
                        sent_count=0,
                        failed_count=0,
                        info={},
                    )
                )


def set_channel_state(
    store: Store, name: str, state: str, reason: str | None, now: datetime
) -> bool:
    with store.write() as conn:
        res = conn.execute(
            update(channels)
            .where(channels.c.name == name)
            .values(state=state, state_reason=reason, state_changed_at=now)
        )
        return bool(res.rowcount)


def queue_counts(store: Store) -> dict[str, dict[str, int]]:
    from sqlalchemy import func

    with store.read() as conn:
        rows = conn.execute(
            select(deliveries.c.channel, deliveries.c.state, func.count()).group_by(
                deliveries.c.channel, deliveries.c.state
            )
        ).all()
    out: dict[str, dict[str, int]] = {}
    for ch, state, n in rows:
        out.setdefault(ch, {})[state] = int(n)
    return out


@dataclass(frozen=True)
class Usage:
    posts_today: int
    posts_this_month: int
    spend_this_month: float


def period_starts(now: datetime) -> tuple[datetime, datetime, datetime, datetime]:
    """(start of today, start of tomorrow, start of this month, start of next month), UTC."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return day, day + timedelta(days=1), month, next_month


def usage(store: Store, channel: str, now: datetime) -> Usage:
    from sqlalchemy import func

    day, _, month, _ = period_starts(now)
    d = deliveries
    with store.read() as conn:
        sent = and_(d.c.channel == channel, d.c.state == S.SENT)
        today = conn.execute(
            select(func.count()).select_from(d).where(sent, d.c.sent_at >= day)
        ).scalar_one()
        month_count, spend = conn.execute(
            select(func.count(), func.coalesce(func.sum(d.c.cost), 0.0))
            .select_from(d)
            .where(sent, d.c.sent_at >= month)
        ).one()
    return Usage(int(today), int(month_count), float(spend))


def operator_retry(store: Store, delivery_id: str, now: datetime, who: str) -> str | None:
    """Try a waiting or failed delivery again now. Returns why not, or None when done.

    A delivery held because its channel needs re-authorization goes once the channel is
    resumed; a delivery being sent right now is left to its worker.
    """
    with store.write() as conn:
        r = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).first()
        if r is None:
            return "no such delivery"
        if r.state not in (S.RETRY_WAIT, S.FAILED, S.PENDING):
            return f"it is {r.state}: nothing to retry"
        check(r.state, S.PENDING)  # the state machine's move, before anything is written
        res = conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id, deliveries.c.state == r.state)
            .values(state=S.PENDING, next_attempt_at=now, updated_at=now)
        )
        if res.rowcount != 1:  # a worker claimed it since it was read: its worker's now
            return "it is being sent right now"
        _event(
            conn, delivery_id, now, r.state, S.PENDING, r.attempts, None, f"retry asked by {who}"
        )
        _wake_workers(conn)
    return None


def operator_cancel(store: Store, delivery_id: str, now: datetime, who: str) -> str | None:
    """Never send this delivery (it is waiting, retrying or failed). Returns why not, or None."""
    with store.write() as conn:
        r = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).first()
        if r is None:
            return "no such delivery"
        if r.state not in (S.PENDING, S.RETRY_WAIT, S.FAILED):
            return f"it is {r.state}: it can no longer be cancelled"
        res = conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id, deliveries.c.state == r.state)
            .values(state=S.CANCELLED, updated_at=now, lease_owner=None, lease_expires_at=None)
        )
        if res.rowcount != 1:  # a worker claimed it a moment ago
            return "it is being sent right now"
        _event(
            conn, delivery_id, now, r.state, S.CANCELLED, r.attempts, None, f"cancelled by {who}"
        )
    return None


def _wake_workers(conn: Connection) -> None:
    """On PostgreSQL, wake idle workers when this transaction commits: once per transaction
    (NOTIFY is sent at commit anyway, and a poll's hundred notices sent a hundred)."""
    if conn.dialect.name != "postgresql":
        return
    transaction = conn.get_transaction()
    if transaction is not None and conn.info.get("clarion_outbox_woken") is transaction:
        return
    conn.info["clarion_outbox_woken"] = transaction  # the object itself: a new one each time
    conn.execute(text(f"NOTIFY {OUTBOX_CHANNEL}"))


def enqueue(
    conn: Connection, rows: list[dict[str, Any]], now: datetime, detail: str | list[str]
) -> None:
    """Queue new deliveries (state `pending`) in the ingest's transaction, with their first
    events (`detail`: one for all, or one per row); on PostgreSQL, idle workers are woken
    when it commits."""
    if not rows:
        return
    details = [detail] * len(rows) if isinstance(detail, str) else detail
    assert len(details) == len(rows)
    for r in rows:
        r["state"] = check(None, r.get("state", DeliveryState.PENDING)).value
    touch(conn, POSTS)
    _INSERT_DELIVERIES.many(conn, rows)
    _wake_workers(conn)
    _INSERT_EVENTS.many(  # one round trip for every first event
        conn,
        [
            {
                "delivery_id": r["id"],
                "at": now,
                "from_state": None,
                "to_state": r["state"],
                "attempt": 0,
                "worker": None,
                "detail": f"{d} for {r['channel']}",
            }
            for r, d in zip(rows, details, strict=True)
        ],
    )


def supersede(
    conn: Connection, replaced: list[int], channel: str, version: int, now: datetime
) -> int:
    """The messages a newer one replaces, not yet sent on `channel`, will never be sent there
    (other branches of the story are not touched: each NWS segment goes out)."""
    older = conn.execute(
        select(deliveries.c.id, deliveries.c.state, deliveries.c.attempts).where(
            deliveries.c.notice_id.in_(replaced),
            deliveries.c.channel == channel,
            deliveries.c.version < version,
            deliveries.c.state.in_(WAITING),
        )
    ).all()
    done = 0
    for row in older:
        res = conn.execute(
            update(deliveries)
            .where(deliveries.c.id == row.id, deliveries.c.state.in_(WAITING))
            .values(state=DeliveryState.SUPERSEDED.value, updated_at=now)
        )
        if res.rowcount == 1:
            done += 1
            _event(
                conn,
                row.id,
                now,
                row.state,
                DeliveryState.SUPERSEDED,
                row.attempts,
                None,
                f"superseded by v{version} before it was sent",
            )
    return done
