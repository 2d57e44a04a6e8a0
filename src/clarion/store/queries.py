"""Named, prebuilt statements for the hot paths (ingest, the outbox).

Each is built once, with bound parameters, so SQLAlchemy compiles and caches it once instead
of building an expression tree and a cache key per call (which cost more than SQLite running
the statement). Call them as `conn.execute(STATEMENT, {...})`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update

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


# A poll's stories, read once for the whole poll (`pipeline._Known`): the stored messages of a
# scope with one of these senders and identifiers (the caller keeps the exact pairs: SQLite
# searches the (sender, identifier, source) index for two IN lists, not for a row-value list)...
MESSAGES_NAMED = select(
    *PARENT_COLUMNS, notices.c.source, notices.c.sender, notices.c.identifier
).where(
    notices.c.sender.in_(bindparam("senders", expanding=True)),
    notices.c.identifier.in_(bindparam("identifiers", expanding=True)),
    notices.c.source.in_(bindparam("scope", expanding=True)),
)
# ...the stored messages that cite any of these references, with their source...
REFERENCING_ANY = (
    select(notice_refs.c.ref, notices.c.source)
    .select_from(notice_refs.join(notices, notices.c.id == notice_refs.c.notice_id))
    .where(notice_refs.c.ref.in_(bindparam("refs", expanding=True)))
)
# ...and the threads of a scope these keys name (what never changes of a thread: its id, key,
# source and status; its version and state are read when it is continued).
THREADS_NAMED = select(
    threads.c.id, threads.c.thread_key, threads.c.source, threads.c.status
).where(
    threads.c.thread_key.in_(bindparam("keys", expanding=True)),
    threads.c.source.in_(bindparam("scope", expanding=True)),
)


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
INSERT_THREAD = insert(threads)
INSERT_NOTICE = insert(notices)
INSERT_NOTICE_REFS = insert(notice_refs)
INSERT_NOTICE_TERMS = insert(notice_terms)
# SET columns come from the parameters given (every key but `thread_id`).
UPDATE_THREAD = update(threads).where(threads.c.id == bindparam("thread_id"))
# A new thread's latest message, set when the poll's rows are written (`pipeline._Writes`).
SET_LATEST_NOTICE = (
    update(threads)
    .where(threads.c.id == bindparam("thread_id"))
    .values(latest_notice_id=bindparam("notice_id"))
)
END_PARENTS = (
    update(notices)
    .where(notices.c.id.in_(bindparam("parent_ids", expanding=True)), notices.c.branch == "live")
    .values(branch=bindparam("new_branch"))
)
