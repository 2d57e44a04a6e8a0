"""Named, prebuilt statements for the hot paths (ingest, the outbox).

Each is built once, with bound parameters, so SQLAlchemy compiles and caches it once instead
of building an expression tree and a cache key per call (which cost more than SQLite running
the statement). Call them as `conn.execute(STATEMENT, {...})`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ARRAY, String, bindparam, func, select, text, update

from clarion.store.driver import DriverInsert, DriverSQL
from clarion.store.schema import notice_refs, notice_terms, notices, threads

PARENT_COLUMNS = (
    notices.c.id,
    notices.c.thread_id,
    notices.c.branch,
    notices.c.sent,
    notices.c.ancestors,
    notices.c.status,
)

THREAD_BY_ID = select(threads).where(threads.c.id == bindparam("thread_id"))

# The stored message a new one references (sender, identifier), within a scope or a thread.
# One statement per reference, not a row-value IN list: SQLite cannot search an index for
# `(sender, identifier) IN (VALUES ...)` and read the whole table instead.
REFERENCED_IN_SCOPE = select(*PARENT_COLUMNS).where(
    notices.c.sender == bindparam("sender"),
    notices.c.identifier == bindparam("identifier"),
    notices.c.source.in_(bindparam("scope", expanding=True)),
)
# The same for a scope of one source (almost every one): an expanding IN list is compiled
# again on every call, which cost more than SQLite running the statement.
REFERENCED_IN_SOURCE = select(*PARENT_COLUMNS).where(
    notices.c.sender == bindparam("sender"),
    notices.c.identifier == bindparam("identifier"),
    notices.c.source == bindparam("source"),
)
REFERENCED_IN_THREAD = select(*PARENT_COLUMNS).where(
    notices.c.sender == bindparam("sender"),
    notices.c.identifier == bindparam("identifier"),
    notices.c.thread_id == bindparam("thread_id"),
)
THREADS_BY_KEY = (
    select(threads)
    .where(
        threads.c.thread_key.in_(bindparam("keys", expanding=True)),
        threads.c.source.in_(bindparam("scope", expanding=True)),
    )
    .order_by(threads.c.id)
)
# The same for one source and at most two keys (the key and its source-scoped form: almost
# every message), without expanding lists: on PostgreSQL the expanding form was 0.76 ms.
THREADS_BY_TWO_KEYS_IN_SOURCE = (
    select(threads)
    .where(
        threads.c.thread_key.in_([bindparam("key1"), bindparam("key2")]),
        threads.c.source == bindparam("source"),
    )
    .order_by(threads.c.id)
)
LIVE_IN_THREAD = (
    select(*PARENT_COLUMNS)
    .where(notices.c.thread_id == bindparam("thread_id"), notices.c.branch == "live")
    .order_by(notices.c.id)
)
COUNT_LIVE_IN_THREAD = (
    select(func.count())
    .select_from(notices)
    .where(notices.c.thread_id == bindparam("thread_id"), notices.c.branch == "live")
)
# The stored messages that reference this one, with their source (the caller keeps those of
# its scope): filtering on the source in SQL made SQLite's planner read the notices of the
# source through its (source, branch) index instead of the few references by key.
REFERENCING = (
    select(notice_refs.c.notice_id, notices.c.source)
    .select_from(notice_refs.join(notices, notices.c.id == notice_refs.c.notice_id))
    .where(notice_refs.c.ref == bindparam("ref"))
)
SAME_CAP_MESSAGE = (
    select(notices.c.id)
    .where(
        notices.c.source.in_(bindparam("scope", expanding=True)),
        notices.c.sender == bindparam("sender"),
        notices.c.identifier == bindparam("identifier"),
    )
    .limit(1)
)
SAME_CAP_MESSAGE_IN_SOURCE = (
    select(notices.c.id)
    .where(
        notices.c.source == bindparam("source"),
        notices.c.sender == bindparam("sender"),
        notices.c.identifier == bindparam("identifier"),
    )
    .limit(1)
)


def _in(column: Any, name: str) -> Any:
    return column.in_(bindparam(name, expanding=True))


# A poll's stories, read once for the whole poll (`pipeline._Known`), one statement for each
# database (keyed by "is it PostgreSQL"). SQLite searches an index for each value of an `IN`
# list (its plans are checked by a test). On PostgreSQL an expanding `IN (…)` list was a new
# statement text for each length and, once psycopg had prepared it, a generic plan that
# compared every stored row with every value (50–100 ms a poll with 10,000 notices stored);
# and a table that grew faster than autovacuum analyses it (a new install's first big poll)
# got a sequential scan even for `= ANY(array)`. So there each key is looked up on its own,
# in a LATERAL subquery (`OFFSET 0` keeps the planner from turning it back into a join): one
# index search per key, whatever the statistics say.
_ARRAYS = {
    "senders": ARRAY(String),
    "identifiers": ARRAY(String),
    "refs": ARRAY(String),
    "keys": ARRAY(String),
    "scope": ARRAY(String),
}


def _pg(sql: str, **columns: Any) -> Any:
    names = [n for n in _ARRAYS if f":{n}" in sql]
    return text(sql).bindparams(*(bindparam(n, type_=_ARRAYS[n]) for n in names)).columns(**columns)


# The stored messages with one of these (sender, identifier) pairs, for the caller to keep
# those of its scope: on SQLite (where the scope is in the statement) the exact pairs of two
# IN lists (a row-value list is not searched by index); on PostgreSQL every source's (with
# the source in the statement, an unanalysed table's plan read the source's every notice
# through its (source, branch) index for each pair)...
MESSAGES_NAMED = {
    False: select(*PARENT_COLUMNS, notices.c.source, notices.c.sender, notices.c.identifier).where(
        _in(notices.c.sender, "senders"),
        _in(notices.c.identifier, "identifiers"),
        _in(notices.c.source, "scope"),
    ),
    True: _pg(
        "SELECT n.id, n.thread_id, n.branch, n.sent, n.ancestors, n.status, n.source,"
        " n.sender, n.identifier"
        " FROM unnest(:senders, :identifiers) AS k(sender, identifier)"
        " CROSS JOIN LATERAL (SELECT id, thread_id, branch, sent, ancestors, status, source,"
        " sender, identifier FROM notices WHERE notices.sender = k.sender"
        " AND notices.identifier = k.identifier OFFSET 0) AS n",
        **{c.name: c.type for c in (*PARENT_COLUMNS, notices.c.source)},
        sender=String,
        identifier=String,
    ),
}
# ...the stored messages that cite any of these references, with their source (looked up by
# id for each citation found: as a join, PostgreSQL hashed every stored notice)...
_citing_source = (
    select(notices.c.source).where(notices.c.id == notice_refs.c.notice_id).scalar_subquery()
)
REFERENCING_ANY = {
    False: select(notice_refs.c.ref, _citing_source.label("source")).where(
        _in(notice_refs.c.ref, "refs")
    ),
    True: _pg(
        "SELECT k.ref, (SELECT source FROM notices WHERE notices.id = r.notice_id) AS source"
        " FROM unnest(:refs) AS k(ref) CROSS JOIN LATERAL (SELECT notice_id FROM notice_refs"
        " WHERE notice_refs.ref = k.ref OFFSET 0) AS r",
        ref=String,
        source=String,
    ),
}
# ...and the threads of a scope these keys name (what never changes of a thread: its id, key,
# source and status; its version and state are read when it is continued).
THREADS_NAMED = {
    False: select(threads.c.id, threads.c.thread_key, threads.c.source, threads.c.status).where(
        _in(threads.c.thread_key, "keys"), _in(threads.c.source, "scope")
    ),
    True: _pg(
        "SELECT t.id, t.thread_key, t.source, t.status FROM unnest(:keys) AS k(thread_key)"
        " CROSS JOIN LATERAL (SELECT id, thread_key, source, status FROM threads"
        " WHERE threads.thread_key = k.thread_key"
        " AND threads.source = ANY(:scope) OFFSET 0) AS t",
        id=threads.c.id.type,
        thread_key=String,
        source=String,
        status=String,
    ),
}


def in_scope(many: Any, one: Any, scope: Collection[str]) -> tuple[Any, dict[str, Any]]:
    """The statement (of a pair: any scope, a scope of one source) and its scope parameter."""
    if len(scope) == 1:
        return one, {"source": next(iter(scope))}
    return many, {"scope": sorted(scope)}


SAME_CONTENT_IN_THREAD = (
    select(notices.c.id)
    .where(
        notices.c.thread_id == bindparam("thread_id"),
        notices.c.content_hash == bindparam("content_hash"),
    )
    .limit(1)
)
SAME_ITEM_IN_THREAD = select(notices.c.id).where(
    notices.c.thread_id == bindparam("thread_id"),
    notices.c.identifier == bindparam("identifier"),
)
NEWEST_SENT_IN_THREAD = select(func.max(notices.c.sent)).where(
    notices.c.thread_id == bindparam("thread_id")
)
# A poll's writes, as driver SQL (`clarion.store.driver`): Core's per-row work was most of
# them (ingest writes a thread, a notice, its references and terms for every message).
INSERT_THREAD = DriverInsert(threads, returning="id")
INSERT_NOTICE = DriverInsert(notices, returning="id")
INSERT_NOTICE_REFS = DriverInsert(notice_refs)
INSERT_NOTICE_TERMS = DriverInsert(notice_terms)
# SET columns come from the parameters given (every key but `thread_id`).
UPDATE_THREAD = update(threads).where(threads.c.id == bindparam("thread_id"))
# A new thread's latest message, set when the poll's rows are written (`pipeline._Writes`).
SET_LATEST_NOTICE = DriverSQL(
    "UPDATE threads SET latest_notice_id = :notice_id WHERE id = :thread_id",
    {"notice_id": threads.c.latest_notice_id.type, "thread_id": threads.c.id.type},
)
END_PARENTS = (
    update(notices)
    .where(notices.c.id.in_(bindparam("parent_ids", expanding=True)), notices.c.branch == "live")
    .values(branch=bindparam("new_branch"))
)
