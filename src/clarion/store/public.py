"""What the public surface reads (the page, the feeds, CAP documents, the API, `/metrics`): named
queries, so that no web handler writes SQL.

Each takes an open connection (the caller's `store.read()`: one snapshot per request) and the
filter's conditions (`NoticeFilter.where()`), and returns rows.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, case, func, or_, select, text

from clarion.store.schema import deliveries, notices, rejected_items, threads

Where = Sequence[ColumnElement[bool]]

# ---------------------------------------------------------------- threads and their versions


def thread(conn: Connection, thread_id: int) -> Any | None:
    return conn.execute(select(threads).where(threads.c.id == thread_id)).first()


def thread_of_notice(conn: Connection, notice_id: int) -> int:
    return int(
        conn.execute(select(notices.c.thread_id).where(notices.c.id == notice_id)).scalar_one()
    )


def notice_data(conn: Connection, notice_id: int) -> dict[str, Any]:
    """A stored notice, as `Notice.model_validate` reads it."""
    data = conn.execute(select(notices.c.data).where(notices.c.id == notice_id)).scalar_one()
    return cast(dict[str, Any], data)


def latest_data(conn: Connection, thread_id: int) -> dict[str, Any] | None:
    """The newest version of a story that changed it (its thread's latest notice)."""
    data = conn.execute(
        select(notices.c.data)
        .select_from(threads.join(notices, notices.c.id == threads.c.latest_notice_id))
        .where(threads.c.id == thread_id)
    ).scalar()
    return cast(dict[str, Any] | None, data)


def versions(
    conn: Connection, thread_ids: Collection[int], *, newest_first: bool = False
) -> list[Any]:
    """Every stored version of these threads, in version order."""
    order = notices.c.version.desc() if newest_first else notices.c.version
    return list(
        conn.execute(
            select(notices).where(notices.c.thread_id.in_(list(thread_ids))).order_by(order)
        )
    )


def deliveries_of(conn: Connection, thread_ids: Collection[int]) -> list[Any]:
    """Every delivery of these threads, by version then channel."""
    return list(
        conn.execute(
            select(deliveries)
            .where(deliveries.c.thread_id.in_(list(thread_ids)))
            .order_by(deliveries.c.version, deliveries.c.channel)
        )
    )


def where_posted(conn: Connection, thread_id: int) -> list[Any]:
    """What a notice page shows of each delivery of the story (never the platform's error)."""
    return list(
        conn.execute(
            select(
                deliveries.c.notice_id,
                deliveries.c.channel,
                deliveries.c.state,
                deliveries.c.receipt_url,
                deliveries.c.payload,
                deliveries.c.error_kind,
            )
            .where(deliveries.c.thread_id == thread_id)
            .order_by(deliveries.c.channel)
        )
    )


def cap_versions(conn: Connection, thread_id: int) -> list[Any]:
    """What a story's CAP documents are made of, version by version."""
    return list(
        conn.execute(
            select(
                notices.c.version,
                notices.c.data,
                notices.c.original,
                notices.c.received_at,
                notices.c.content_hash,
            )
            .where(notices.c.thread_id == thread_id)
            .order_by(notices.c.version)
        )
    )


# ---------------------------------------------------------------------------- lists of stories


def _matching_threads(where: Where) -> Any:
    return select(notices.c.thread_id).where(*where)


def timeline(
    conn: Connection,
    where: Where,
    *,
    offset: int,
    limit: int,
    in_effect: int,
    now: datetime,
    news_kinds: Collection[str],
) -> tuple[int, list[Any], list[Any]]:
    """The public page: (how many stories match, this page of them newest first, and — when
    `in_effect` > 0 — the stories still in effect at `now` that are not news)."""
    q = select(threads, notices.c.data, notices.c.over_at).select_from(
        threads.join(notices, notices.c.id == threads.c.latest_notice_id)
    )
    if where:
        q = q.where(threads.c.id.in_(_matching_threads(where)))
    total = conn.execute(select(func.count()).select_from(q.subquery())).scalar_one()
    rows = conn.execute(
        q.order_by(threads.c.updated_at.desc(), threads.c.id.desc()).offset(offset).limit(limit)
    ).all()
    active: list[Any] = []
    if in_effect > 0:
        active = list(
            conn.execute(
                q.where(
                    threads.c.state == "active",
                    notices.c.kind.not_in(list(news_kinds)),
                    or_(notices.c.over_at.is_(None), notices.c.over_at > now),
                )
                .order_by(threads.c.updated_at.desc())
                .limit(in_effect)
            ).all()
        )
    return int(total), list(rows), active


def threads_before(conn: Connection, where: Where, before: int | None, limit: int) -> list[Any]:
    """Stories newest first (by id), older than `before`: one page of the API's list."""
    q = select(threads)
    if where:
        q = q.where(threads.c.id.in_(_matching_threads(where)))
    if before is not None:
        q = q.where(threads.c.id < before)
    return list(conn.execute(q.order_by(threads.c.id.desc()).limit(limit)))


def deliveries_before(
    conn: Connection, channel: str | None, state: str | None, before: int | None, limit: int
) -> list[Any]:
    """Deliveries by notice, newest first, of notices older than `before`."""
    q = select(deliveries)
    if channel:
        q = q.where(deliveries.c.channel == channel)
    if state:
        q = q.where(deliveries.c.state == state)
    if before is not None:
        q = q.where(deliveries.c.notice_id < before)
    return list(
        conn.execute(q.order_by(deliveries.c.notice_id.desc(), deliveries.c.channel).limit(limit))
    )


def publisher_sample(conn: Connection, sender: str) -> dict[str, Any] | None:
    """One notice of this sender (its name is in it)."""
    data = conn.execute(select(notices.c.data).where(notices.c.sender == sender).limit(1)).scalar()
    return cast(dict[str, Any] | None, data)


def has_notices_from(conn: Connection, source: str) -> bool:
    return (
        conn.execute(select(notices.c.id).where(notices.c.source == source).limit(1)).first()
        is not None
    )


def sitemap(conn: Connection, limit: int) -> tuple[list[Any], list[str]]:
    """The newest stories (id, updated_at) and every source that stored a notice."""
    rows = conn.execute(
        select(threads.c.id, threads.c.updated_at).order_by(threads.c.id.desc()).limit(limit)
    ).all()
    sources = sorted({r.source for r in conn.execute(select(notices.c.source).distinct())})
    return list(rows), sources


# ------------------------------------------------------------------------------ feeds and events

ITEM_COLUMNS = (
    notices.c.id,
    notices.c.thread_id,
    notices.c.version,
    notices.c.msg_type,
    notices.c.headline,
    notices.c.received_at,
    notices.c.severity,
    notices.c.data,
)


def feed_state(conn: Connection, where: Where) -> tuple[int | None, int, datetime | None]:
    """(newest matching notice id, how many match, when the newest was received): what names
    a feed's content, for its ETag and Last-Modified."""
    newest, total, last = conn.execute(
        select(
            func.max(notices.c.id), func.count(notices.c.id), func.max(notices.c.received_at)
        ).where(*where)
    ).one()
    return newest, int(total), last


def feed_items(conn: Connection, where: Where, limit: int) -> list[Any]:
    """The newest matching notice versions, newest first."""
    return list(
        conn.execute(select(*ITEM_COLUMNS).where(*where).order_by(notices.c.id.desc()).limit(limit))
    )


def newest_notice_id(conn: Connection) -> int:
    return int(conn.execute(select(func.max(notices.c.id))).scalar() or 0)


def notices_after(
    conn: Connection, after: int, where: Where, limit: int, upto: int | None = None
) -> list[Any]:
    """Matching notice versions stored after `after` (and not after `upto`), oldest first (the
    event stream)."""
    bound = [] if upto is None else [notices.c.id <= upto]
    return list(
        conn.execute(
            select(*ITEM_COLUMNS)
            .where(notices.c.id > after, *bound, *where)
            .order_by(notices.c.id)
            .limit(limit)
        )
    )


def settled_after(
    conn: Connection, after: int, limit: int = 1000, wait: bool = True
) -> tuple[int, bool]:
    """The highest notice id up to which every id after `after` is settled: stored, or never
    to be (a rolled-back ingest's). The event stream names notices up to it, so that a client
    resuming from the last id it got misses nothing. Also: whether a missing id held it back.

    On PostgreSQL ids are taken when a notice is inserted and seen when its transaction
    commits, so an ingest still running can commit a lower id after a higher one is seen: a
    stream that moved past it lost it (seen on a real server: id 2 read, then id 1 committed).
    A missing id below a stored one is waited for while any ingest is running (each holds
    `INGESTING`, shared, for its whole transaction); once none is, the ids are read again, and
    what is still missing below the first read's newest is gone. On SQLite one transaction
    writes at a time: nothing is ever in flight under a committed id. `wait=False`: a missing
    id is not waited for (the stream gives up on one after `STREAM_GAP_WAIT` seconds, so
    ingests that overlap without end cannot hold it up for ever)."""

    def ids() -> list[int]:
        return [
            int(r[0])
            for r in conn.execute(
                select(notices.c.id).where(notices.c.id > after).order_by(notices.c.id).limit(limit)
            )
        ]

    def walk(seen: list[int], gaps_below: int) -> int:
        settled = after
        for i in seen:
            if i != settled + 1 and i > gaps_below:
                break  # a missing id that may still be committed
            settled = i
        return settled

    first = ids()
    if conn.dialect.name != "postgresql" or not first or not wait:
        return (first[-1] if first else after), False
    settled = walk(first, gaps_below=after)
    if settled == first[-1]:
        return settled, False
    if ingest_running(conn):
        return settled, True
    return walk(ids(), gaps_below=first[-1]), False


STREAM_GAP_WAIT = 30.0  # seconds the event stream waits for one missing notice id

# A lock every PostgreSQL ingest holds, shared, until its transaction ends (see
# `settled_after`); a bigint key shows in pg_locks as (classid, objid) = its high and low words.
INGESTING = 0x436C6172696F6E49  # "ClarionI"


def ingest_running(conn: Connection) -> bool:
    """Whether an ingest's transaction is open right now (PostgreSQL)."""
    return bool(
        conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = :hi AND objid = :lo AND objsubid = 1)"
            ),
            {"hi": INGESTING >> 32, "lo": INGESTING & 0xFFFFFFFF},
        ).scalar()
    )


# ------------------------------------------------------------------------- the fediverse actor


def notice_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(notices)).scalar_one())


def sent_on(conn: Connection, channel: str, limit: int) -> list[Any]:
    """The newest posts a channel made (payload, receipt, sent_at), newest first."""
    return list(
        conn.execute(
            select(deliveries.c.payload, deliveries.c.receipt, deliveries.c.sent_at)
            .where(deliveries.c.channel == channel, deliveries.c.state == "sent")
            .order_by(deliveries.c.sent_at.desc())
            .limit(limit)
        )
    )


def stories_sent_on(conn: Connection, channel: str) -> int:
    """How many stories a channel posted (its updates edit the same post)."""
    return int(
        conn.execute(
            select(func.count(func.distinct(deliveries.c.thread_id))).where(
                deliveries.c.channel == channel, deliveries.c.state == "sent"
            )
        ).scalar_one()
    )


def last_sent_payload(conn: Connection, channel: str, thread_id: int) -> dict[str, Any] | None:
    """What a channel last posted of a story (its newest sent version)."""
    payload = conn.execute(
        select(deliveries.c.payload)
        .where(
            deliveries.c.channel == channel,
            deliveries.c.thread_id == thread_id,
            deliveries.c.state == "sent",
        )
        .order_by(deliveries.c.version.desc())
        .limit(1)
    ).scalar()
    return cast(dict[str, Any] | None, payload)


# ------------------------------------------------------------------------------------ /metrics


def seconds_between(conn: Connection, start: Any, end: Any) -> ColumnElement[float]:
    """`end - start` in seconds, on SQLite and on PostgreSQL."""
    if conn.dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return cast(ColumnElement[float], func.extract("epoch", end - start))


def _buckets(latency: ColumnElement[float], bounds: Sequence[float]) -> list[Any]:
    cols: list[Any] = [
        func.sum(case((latency <= b, 1), else_=0)).label(f"le_{i}") for i, b in enumerate(bounds)
    ]
    return [*cols, func.count().label("n"), func.sum(latency).label("total")]


def latency_histograms(conn: Connection, bounds: Sequence[float]) -> tuple[list[Any], list[Any]]:
    """Cumulative counts (`le_0`…, `n`, `total`) of the seconds from a notice's sent time to
    when it was stored, by source (`key`), and to when each channel confirmed it, by channel."""
    ingest = seconds_between(conn, notices.c.sent, notices.c.received_at)
    ingested = conn.execute(
        select(notices.c.source.label("key"), *_buckets(ingest, bounds)).group_by(notices.c.source)
    ).all()
    delivered_latency = seconds_between(conn, notices.c.sent, deliveries.c.sent_at)
    delivered = conn.execute(
        select(deliveries.c.channel.label("key"), *_buckets(delivered_latency, bounds))
        .select_from(deliveries.join(notices, notices.c.id == deliveries.c.notice_id))
        .where(deliveries.c.state == "sent")
        .group_by(deliveries.c.channel)
    ).all()
    return list(ingested), list(delivered)


def rejections(conn: Connection) -> list[Any]:
    """(source, reason, count) of the items sources listed that could not be read."""
    return list(
        conn.execute(
            select(
                rejected_items.c.source,
                rejected_items.c.reason,
                func.sum(rejected_items.c.count),
            ).group_by(rejected_items.c.source, rejected_items.c.reason)
        )
    )
