"""Ingest: store + route + render + enqueue, in one database transaction.

For each notice: find its thread (following CAP references through what is already stored),
skip it if this exact content is already stored, store it as the thread's next version, choose
its channels, render it for each, supersede older deliveries of the thread that have not gone
out yet, and insert one outbox row per channel. Either all of that commits or none of it does:
nothing is sent that was not first recorded, and nothing recorded is lost.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, text, tuple_, update

from clarion.channels.base import Channel, RenderContext
from clarion.config import Config
from clarion.model import CAP_KINDS, MsgType, Notice
from clarion.routing import is_stale, route
from clarion.store import Store
from clarion.store.schema import deliveries, delivery_events, notice_terms, notices, threads
from clarion.store.terms import terms_for

log = logging.getLogger(__name__)
OUTBOX_CHANNEL = "clarion_outbox"  # LISTEN/NOTIFY: deliveries were queued

PENDING_STATES = ("pending", "retry_wait")


@dataclass
class IngestResult:
    stored: list[int] = field(default_factory=list)  # new notice ids
    unchanged: int = 0
    deliveries: int = 0
    superseded: int = 0
    not_routed_stale: int = 0
    out_of_order: int = 0
    ended: int = 0
    thread_keys: set[str] = field(default_factory=set)  # every thread this batch touched

    def __iadd__(self, other: IngestResult) -> IngestResult:
        self.stored += other.stored
        self.unchanged += other.unchanged
        self.deliveries += other.deliveries
        self.superseded += other.superseded
        self.not_routed_stale += other.not_routed_stale
        self.out_of_order += other.out_of_order
        self.ended += other.ended
        self.thread_keys |= other.thread_keys
        return self


def permalink(config: Config, thread_id: int) -> str:
    base = config.clarion.public_url or f"http://{config.clarion.host}:{config.clarion.port}"
    return f"{base.rstrip('/')}/notices/{thread_id}"


def ingest(
    store: Store,
    config: Config,
    channels: Mapping[str, Channel],
    items: Iterable[Notice],
    *,
    source: str,
    now: datetime | None = None,
    include_expired: bool = False,
    edits: str = "update",
    within: Callable[[Connection, IngestResult], None] | None = None,
) -> IngestResult:
    """Ingest notices from one source, all in one transaction.

    `edits="ignore"`: a new version of an item already stored under the same identifier (an
    edited blog post) is not stored or sent; by default it becomes an update.
    `within(conn, result)` runs in the same transaction once the notices are stored: what it
    writes commits with them, and an exception it raises undoes them (the desk marks its draft
    sent this way, so a draft is sent exactly once even with several workers).
    """
    now = now or datetime.now(UTC)
    result = IngestResult()
    with store.write() as conn:
        # Oldest first: a poll that lists an alert and its update posts them in that order.
        for notice in sorted(items, key=lambda n: n.sent):
            key = notice.thread_key
            if key.startswith("local:"):
                key = f"local:{source}:{key.removeprefix('local:')}"
            result += _ingest_one(
                conn,
                config,
                channels,
                notice.model_copy(update={"source": source, "thread_key": key}),
                now,
                include_expired,
                edits,
            )
        if within is not None:
            within(conn, result)
    if result.stored and config.clarion.websub_hub:
        from clarion.web.websub_publish import announce

        announce(config, {source})  # after the commit: the hub fetches what is now there
    return result


def _resolve_thread(conn: Connection, notice: Notice) -> str:
    """The thread key: a referenced message already stored decides it, else the parser's guess."""
    if not notice.references:
        return notice.thread_key
    pairs = [(r.sender, r.identifier) for r in notice.references]
    row = conn.execute(
        select(threads.c.thread_key)
        .select_from(notices.join(threads, notices.c.thread_id == threads.c.id))
        .where(tuple_(notices.c.sender, notices.c.identifier).in_(pairs))
        .order_by(notices.c.id)
        .limit(1)
    ).first()
    return str(row.thread_key) if row is not None else notice.thread_key


def _ingest_one(
    conn: Connection,
    config: Config,
    channels: Mapping[str, Channel],
    notice: Notice,
    now: datetime,
    include_expired: bool,
    edits: str = "update",
) -> IngestResult:
    result = IngestResult()
    thread_key = _resolve_thread(conn, notice)
    result.thread_keys.add(thread_key)
    content_hash = notice.content_hash()
    thread = conn.execute(select(threads).where(threads.c.thread_key == thread_key)).first()
    if thread is not None:
        dup = conn.execute(
            select(notices.c.id)
            .where(
                notices.c.thread_id == thread.id,
                (notices.c.content_hash == content_hash)
                # CAP freezes identifier+sent: the same message fetched again is the same message.
                | and_(
                    notices.c.kind.in_(CAP_KINDS),
                    notices.c.sender == notice.sender,
                    notices.c.identifier == notice.identifier,
                ),
            )
            .limit(1)
        ).first()
        if dup is not None:
            result.unchanged += 1
            return result
        if edits == "ignore" and notice.kind not in CAP_KINDS:
            edited = conn.execute(
                select(notices.c.id).where(
                    notices.c.thread_id == thread.id, notices.c.identifier == notice.identifier
                )
            ).first()
            if edited is not None:  # the operator asked not to republish edits
                result.unchanged += 1
                return result
    version = (thread.latest_version if thread is not None else 0) + 1
    out_of_order = False
    if thread is not None and notice.kind in CAP_KINDS and notice.msg_type is not MsgType.END:
        # CAP says itself what a message does. One older than what the thread already holds
        # arrived late (a slow index, a replay): keep it, but never post it over newer news.
        newest_sent = conn.execute(
            select(func.max(notices.c.sent)).where(notices.c.thread_id == thread.id)
        ).scalar_one()
        out_of_order = newest_sent is not None and notice.sent < newest_sent
    elif thread is not None and notice.msg_type is MsgType.ALERT:
        # An edited feed item (same id, new content): an update to readers.
        notice = notice.model_copy(update={"msg_type": MsgType.UPDATE})
    notice = notice.model_copy(update={"thread_key": thread_key, "version": version})
    if thread is None:
        thread_id = _insert(
            conn,
            insert(threads).values(
                thread_key=thread_key,
                source=notice.source,
                state="active",
                latest_version=0,
                headline=notice.headline,
                severity=notice.severity.value,
                status=notice.status.value,
                created_at=now,
                updated_at=now,
            ),
        )
    else:
        thread_id = thread.id
    notice_id = _insert(
        conn,
        insert(notices).values(
            thread_id=thread_id,
            version=version,
            source=notice.source,
            kind=notice.kind,
            identifier=notice.identifier,
            sender=notice.sender,
            sent=notice.sent,
            status=notice.status.value,
            msg_type=notice.msg_type.value,
            severity=notice.severity.value,
            headline=notice.headline,
            expires=notice.expires,
            content_hash=content_hash,
            data=notice.to_json_dict(),
            original=notice.original,
            original_content_type=notice.original_content_type,
            signature=notice.signature.value,
            received_at=now,
        ),
    )
    if terms := sorted(terms_for(notice)):
        conn.execute(insert(notice_terms), [{"notice_id": notice_id, "term": t} for t in terms])
    thread_values: dict[str, object] = {"latest_version": version}
    if not out_of_order:  # what the thread shows is its newest message, not the last to arrive
        thread_values.update(
            latest_notice_id=notice_id,
            updated_at=now,
            state={MsgType.CANCEL: "cancelled", MsgType.END: "ended"}.get(
                notice.msg_type, "active"
            ),
        )
        if not notice.msg_type.closes:  # a cancel's own headline is rarely informative
            thread_values.update(headline=notice.headline, severity=notice.severity.value)
    conn.execute(update(threads).where(threads.c.id == thread_id).values(**thread_values))
    result.stored.append(int(notice_id))

    if out_of_order:
        result.out_of_order += 1
        log.info("notice %s is older than its thread's latest: stored, not sent", notice.identifier)
        return result
    if is_stale(notice, now) and config.clarion.drop_expired and not include_expired:
        result.not_routed_stale += 1
        log.info("notice %s expired at %s: stored, not sent", notice.identifier, notice.expires)
        return result
    new_deliveries: list[dict[str, Any]] = []
    for channel_name in route(notice, config):
        channel = channels.get(channel_name)
        if channel is None:
            continue
        ctx = RenderContext(
            languages=tuple(config.clarion.languages),
            permalink=permalink(config, int(thread_id)),
            template=config.channels[channel_name].template,
        )
        if version > 1:
            result.superseded += _supersede(conn, thread_id, channel_name, version, now)
        new_deliveries.append(
            {
                "id": str(uuid.uuid4()),
                "notice_id": notice_id,
                "thread_id": thread_id,
                "channel": channel_name,
                "version": version,
                "msg_type": notice.msg_type.value,
                "state": "pending",
                "payload": (payload := channel.render(notice, ctx)),
                "cost": float(payload.get("cost", 0.0)),
                "severity_rank": notice.severity.rank,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
        )
    if new_deliveries:  # one round trip each for the outbox rows and their first audit rows
        conn.execute(insert(deliveries), new_deliveries)
        if conn.dialect.name == "postgresql":  # idle workers wake when this commits
            conn.execute(text(f"NOTIFY {OUTBOX_CHANNEL}"))
        conn.execute(
            insert(delivery_events),
            [
                {
                    "delivery_id": d["id"],
                    "at": now,
                    "from_state": None,
                    "to_state": "pending",
                    "attempt": 0,
                    "worker": None,
                    "detail": f"queued {notice.msg_type.value} v{version} for {d['channel']}",
                }
                for d in new_deliveries
            ],
        )
        result.deliveries += len(new_deliveries)
    return result


def _supersede(conn: Connection, thread_id: int, channel: str, version: int, now: datetime) -> int:
    """Older versions of this thread not yet sent on this channel will never be sent."""
    older = conn.execute(
        select(deliveries.c.id, deliveries.c.state, deliveries.c.attempts).where(
            deliveries.c.thread_id == thread_id,
            deliveries.c.channel == channel,
            deliveries.c.version < version,
            deliveries.c.state.in_(PENDING_STATES),
        )
    ).all()
    for row in older:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == row.id, deliveries.c.state.in_(PENDING_STATES))
            .values(state="superseded", updated_at=now)
        )
        conn.execute(
            insert(delivery_events).values(
                delivery_id=row.id,
                at=now,
                from_state=row.state,
                to_state="superseded",
                attempt=row.attempts,
                detail=f"superseded by v{version} before it was sent",
            )
        )
    return len(older)


def _insert(conn: Connection, stmt: Any) -> int:
    """Run an INSERT and return the new row's integer primary key."""
    key = conn.execute(stmt).inserted_primary_key
    assert key is not None
    return int(key[0])


def end_threads(
    store: Store,
    config: Config,
    channels: Mapping[str, Channel],
    thread_keys: Iterable[str],
    *,
    source: str,
    reason: str,
    now: datetime | None = None,
) -> IngestResult:
    """End threads that left a source listing only what is active (the third way a story ends).

    Each still-open thread gets an END version, a copy of its newest message saying it is over,
    which goes through the same routing and outbox as everything else (it posts only where
    something was posted before).
    """
    now = now or datetime.now(UTC)
    result = IngestResult()
    with store.write() as conn:
        for key in sorted(thread_keys):
            row = conn.execute(
                select(threads.c.state, notices.c.data, notices.c.original)
                .select_from(threads.join(notices, notices.c.id == threads.c.latest_notice_id))
                .where(threads.c.thread_key == key)
            ).first()
            if row is None or row.state != "active":
                continue
            latest = Notice.model_validate(row.data)
            ended = latest.model_copy(
                update={
                    "identifier": f"{latest.identifier}#ended",
                    "sent": max(now, latest.sent),  # never "older" than what it ends
                    "msg_type": MsgType.END,
                    "references": [],
                    "note": reason,
                    "thread_key": key,
                    "original": None,
                    "original_content_type": None,
                }
            )
            one = _ingest_one(conn, config, channels, ended, now, include_expired=True)
            result += one
            result.ended += len(one.stored)
    return result
