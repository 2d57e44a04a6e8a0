"""Ingest: store + route + render + enqueue, in one database transaction.

For each notice: find its thread (following CAP references through what is already stored),
skip it if this exact content is already stored, store it as the thread's next version, choose
its channels, render it for each, supersede older deliveries of the thread that have not gone
out yet, and insert one outbox row per channel (a large fan-out to subscribers: several, its
parts). Either all of that commits or none of it does:
nothing is sent that was not first recorded, and nothing recorded is lost.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Connection, select, text

from clarion.channels.base import Channel, RenderContext
from clarion.config import Config
from clarion.delivery import outbox
from clarion.model import CAP_KINDS, MsgType, Notice, Reference, Status
from clarion.routing import is_stale, route
from clarion.sources.base import Rejected
from clarion.store import DATABASE_AWAY, Store, changes
from clarion.store import queries as Q
from clarion.store.public import INGESTING
from clarion.store.schema import (
    deliveries,
    notices,
    threads,
)
from clarion.store.terms import terms_for
from clarion.subscriptions import matching as subscription_matching

log = logging.getLogger(__name__)
OUTBOX_CHANNEL = outbox.OUTBOX_CHANNEL  # where it always was, for callers


@dataclass
class IngestResult:
    stored: list[int] = field(default_factory=list)  # new notice ids
    unchanged: int = 0
    deliveries: int = 0
    superseded: int = 0
    not_routed_stale: int = 0
    not_routed_old: int = 0  # would open a story, but older than the source's max_age
    out_of_order: int = 0
    ended: int = 0
    thread_keys: set[str] = field(default_factory=set)  # every thread this batch touched
    identifiers: set[str] = field(default_factory=set)  # every message this batch listed
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (identifier, why not sent)

    def __iadd__(self, other: IngestResult) -> IngestResult:
        self.stored += other.stored
        self.unchanged += other.unchanged
        self.deliveries += other.deliveries
        self.superseded += other.superseded
        self.not_routed_stale += other.not_routed_stale
        self.not_routed_old += other.not_routed_old
        self.out_of_order += other.out_of_order
        self.ended += other.ended
        self.thread_keys |= other.thread_keys
        self.identifiers |= other.identifiers
        self.skipped += other.skipped
        return self


@dataclass
class _Writes:
    """Rows an ingest writes that it does not read back at once: written in one statement each
    when the poll ends (one round trip for a hundred notices' outbox rows instead of two per
    notice), or earlier, before anything reads them (`flush`).

    The one read of references before then, "does a stored message reference this one?"
    (`_is_late`), also looks here.
    """

    deliveries: list[dict[str, Any]] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    refs: list[dict[str, Any]] = field(default_factory=list)
    ref_sources: dict[str, set[str]] = field(default_factory=dict)  # ref → sources citing it
    terms: list[dict[str, Any]] = field(default_factory=list)
    latest: dict[int, int] = field(default_factory=dict)  # a new thread's id → its one message
    known: _Known | None = None  # the poll's stories, read once (None: read one by one)

    def flush(self, conn: Connection, now: datetime) -> None:
        # Nothing in an ingest reads a thread's latest message id.
        Q.SET_LATEST_NOTICE.many(
            conn, [{"thread_id": t, "notice_id": n} for t, n in self.latest.items()]
        )
        Q.INSERT_NOTICE_REFS.many(conn, self.refs)
        Q.INSERT_NOTICE_TERMS.many(conn, self.terms)
        if self.deliveries:
            outbox.enqueue(conn, self.deliveries, now, self.details)
        self.deliveries, self.details, self.refs, self.terms = [], [], [], []
        self.ref_sources.clear()
        self.latest.clear()


class _Stored(NamedTuple):
    """What never changes of a stored message (its branch does: it is not kept here)."""

    id: int
    thread_id: int
    sent: datetime
    ancestors: list[int] | None
    status: str
    source: str


class _Opened(NamedTuple):
    """What never changes of a thread (its version, state and headline do)."""

    id: int
    source: str
    status: str


_CHUNK = 500  # identifiers per IN list
_T = TypeVar("_T")


@dataclass
class _Known:
    """A poll's stories, read in three statements for the whole poll instead of four or five
    for each of its messages (on PostgreSQL each is a round trip).

    Before the first message, one statement each reads the stored messages of the scope that
    the poll's messages reference or repeat, the stored messages that cite them, and the
    threads their keys name. Only what never changes once written is kept (a message's id,
    thread, time, ancestors and status; a citation; a thread's id, key, source and status);
    what changes (which branches are live, a thread's version and state) is still read when a
    story is continued. What the poll itself stores is added as it goes (`stored`, `cited`,
    `opened`), so a message later in the poll sees one earlier in it, as a statement would.
    On PostgreSQL, `ingest` holds a lock on the scope for its transaction, so another process
    cannot store a message of the scope between this read and the commit.
    """

    messages: dict[tuple[str, str], list[_Stored]] = field(default_factory=dict)
    citing: dict[str, set[str]] = field(default_factory=dict)  # ref → sources citing it
    threads: dict[str, _Opened] = field(default_factory=dict)  # stored key → thread

    @classmethod
    def read(cls, conn: Connection, items: list[Notice], scope: frozenset[str]) -> _Known:
        known = cls()
        pg = conn.dialect.name == "postgresql"
        pairs = {(r.sender, r.identifier) for n in items for r in n.references}
        pairs |= {(n.sender, n.identifier) for n in items if n.kind in CAP_KINDS}
        in_scope = sorted(scope)
        for chunk in _chunks(sorted(pairs)):
            # PostgreSQL looks each pair up (two arrays, zipped); SQLite takes two IN lists,
            # and the pairs are picked out of what they find.
            senders = [s for s, _ in chunk] if pg else sorted({s for s, _ in chunk})
            identifiers = [i for _, i in chunk] if pg else sorted({i for _, i in chunk})
            for row in conn.execute(
                Q.MESSAGES_NAMED[pg],
                {"senders": senders, "identifiers": identifiers, "scope": in_scope},
            ):
                if (row.sender, row.identifier) in pairs and row.source in scope:
                    message = _Stored(
                        row.id, row.thread_id, row.sent, row.ancestors, row.status, row.source
                    )
                    known.stored(row.sender, row.identifier, message)
        cap = sorted({ref_key(n.sender, n.identifier) for n in items if n.kind in CAP_KINDS})
        for refs in _chunks(cap):
            for cite in conn.execute(Q.REFERENCING_ANY[pg], {"refs": refs}):
                known.cited(cite.ref, cite.source)
        keys = sorted({k for n in items for k in _thread_keys(n, scope)})
        for named in _chunks(keys):
            for t in conn.execute(Q.THREADS_NAMED[pg], {"keys": named, "scope": in_scope}):
                known.opened(t.thread_key, _Opened(t.id, t.source, t.status))
        return known

    def stored(self, sender: str, identifier: str, message: _Stored) -> None:
        self.messages.setdefault((sender, identifier), []).append(message)

    def cited(self, ref: str, source: str) -> None:
        self.citing.setdefault(ref, set()).add(source)

    def opened(self, key: str, thread: _Opened) -> None:
        self.threads[key] = thread


def _chunks(values: list[_T]) -> Iterator[list[_T]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


def _thread_keys(notice: Notice, scope: frozenset[str]) -> list[str]:
    """The stored keys under which a message's thread may be found, within its scope: its key
    (a Test or Exercise message's own: see `_find_story`), bare and under each source's name."""
    own_key = _own_key(notice)
    keys = {scoped_key(s, k) for s in scope for k in (own_key, notice.thread_key)}
    keys |= {own_key, notice.thread_key}
    return sorted(keys)


def _own_key(notice: Notice) -> str:
    # A Test or Exercise message never changes an Actual story (nor the other way round): it
    # is a story of its own, whatever it references or whatever key its parser gave it.
    if notice.status is Status.ACTUAL:
        return notice.thread_key
    return f"{notice.thread_key}#{notice.status.value}"


def permalink(config: Config, thread_id: int) -> str:
    base = config.clarion.public_url or f"http://{config.clarion.host}:{config.clarion.port}"
    return f"{base.rstrip('/')}/notices/{thread_id}"


def story_scope(config: Config, source: str) -> frozenset[str]:
    """The sources whose stories `source` may continue: itself, and those joined to it by
    `stories_with` (in either direction, transitively: a CAP feed and its push twin). Nothing
    else: a reference to another source's message is not followed."""
    links: dict[str, set[str]] = {}
    for name, cfg in config.sources.items():
        for other in getattr(cfg, "stories_with", None) or []:
            links.setdefault(name, set()).add(other)
            links.setdefault(other, set()).add(name)
    scope, todo = {source}, [source]
    while todo:
        for other in links.get(todo.pop(), ()):
            if other not in scope:
                scope.add(other)
                todo.append(other)
    return frozenset(scope)


def scoped_key(source: str, key: str) -> str:
    """A new thread's stored key: the parser's key under its source's name. (Keys stored before
    stories were scoped have no prefix; the thread's `source` column scopes those.)"""
    return key if key.startswith(f"{source}/") else f"{source}/{key}"


def ref_key(sender: str, identifier: str) -> str:
    """One referenced message, as stored in `notice_refs` (length-prefixed: unambiguous)."""
    return f"{len(sender)}:{sender} {identifier}"


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
    follow: int | None = None,
    max_age: float | None = None,
) -> IngestResult:
    """Ingest notices from one source, all in one transaction.

    `edits="ignore"`: a new version of an item already stored under the same identifier (an
    edited blog post) is not stored or sent; by default it becomes an update.
    `within(conn, result)` runs in the same transaction once the notices are stored: what it
    writes commits with them, and an exception it raises undoes them (the desk marks its draft
    sent this way, so a draft is sent exactly once even with several workers).
    `max_age` (seconds): a message that would open a new story but was sent longer ago than
    this is stored, never posted as new (an archive served again, a years-old incident).
    `follow`: the id of the thread these notices continue, whatever its source. Only the
    operator's own entry points (the desk, the CLI) pass it; what sources send continues only
    stories of their own scope (`story_scope`).
    """
    now = now or datetime.now(UTC)
    result = IngestResult()
    scope = story_scope(config, source)
    writes = _Writes()
    poll = []
    # Oldest first: a poll that lists an alert and its update posts them in that order.
    for notice in sorted(items, key=lambda n: n.sent):
        key = notice.thread_key
        if key.startswith("local:"):
            key = f"local:{source}:{key.removeprefix('local:')}"
        poll.append(notice.model_copy(update={"source": source, "thread_key": key}))
    with store.write() as conn:
        if conn.dialect.name == "postgresql":
            _storing_notices(conn)
            # One ingest of a scope at a time (a feed and its push twin): what `_Known` read
            # stays true until this transaction commits. Released when it ends.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _scope_lock(scope)})
        writes.known = _Known.read(conn, poll, scope)
        for notice in poll:
            result += _ingest_one(
                conn,
                config,
                channels,
                notice,
                now,
                include_expired,
                edits,
                scope=scope,
                follow=follow,
                max_age=max_age,
                writes=writes,
            )
        writes.flush(conn, now)
        if within is not None:
            within(conn, result)
    if result.stored and config.clarion.websub_hub:
        from clarion.web.websub_publish import announce

        announce(config, {source})  # after the commit: the hub fetches what is now there
    return result


def ingest_listing(
    store: Store,
    config: Config,
    channels: Mapping[str, Channel],
    items: Iterable[Notice],
    *,
    source: str,
    now: datetime | None = None,
    edits: str = "update",
    max_age: float | None = None,
    seen: Callable[[Connection, set[str]], None] | None = None,
) -> tuple[IngestResult, list[Rejected]]:
    """Ingest what a source listed: in one transaction, as `ingest` does; if that fails for
    any reason but the database being away, each message alone, oldest first, so that one
    message that cannot be stored (a bug it meets, a value the database refuses) is rejected
    alone and every other one is stored and posted. Without this, that one message failed
    the whole poll, every other alert of the listing unposted, poll after poll. When no
    message can be stored alone either, the first error is raised: the poll fails, as it
    is not one message's fault.

    `seen(conn, rejected_identifiers)` records what the poll saw, in the transaction that
    stores it (a feed's `Sorted.record`); a rejected message stays unseen, tried again at
    the next poll."""
    items = sorted(items, key=lambda n: n.sent)
    try:
        result = ingest(
            store,
            config,
            channels,
            items,
            source=source,
            now=now,
            edits=edits,
            max_age=max_age,
            within=None if seen is None else (lambda conn, _: seen(conn, set())),
        )
        return result, []
    except DATABASE_AWAY:
        raise
    except Exception as exc:
        first = exc
        log.warning(
            "source %s: its %d messages could not be stored together (%r); each alone now",
            source,
            len(items),
            exc,
        )
    result, rejected = IngestResult(), []
    for notice in items:
        try:
            result += ingest(
                store,
                config,
                channels,
                [notice],
                source=source,
                now=now,
                edits=edits,
                max_age=max_age,
            )
        except DATABASE_AWAY:
            raise
        except Exception as exc:
            log.exception("source %s: message %s could not be stored", source, notice.identifier)
            detail = " ".join(f"could not be stored: {type(exc).__name__}: {exc}".split())
            rejected.append(Rejected(notice.identifier, "unstorable", detail[:500]))
    if items and len(rejected) == len(items):
        raise first
    if seen is not None:
        # Stored ones whose record this misses (a crash just here) are found stored again at
        # the next poll: nothing is posted twice.
        with store.write() as conn:
            seen(conn, {r.item for r in rejected})
    return result, rejected


def _storing_notices(conn: Connection) -> None:
    """Say, until this transaction ends, that it may store notices (PostgreSQL; shared, so
    ingests never wait for each other): the event stream waits for the notice ids it may
    still commit (see `store.public.settled_after`)."""
    conn.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": INGESTING})


def _scope_lock(scope: frozenset[str]) -> int:
    """The advisory lock key of a scope: the same in every process (a signed 64-bit integer)."""
    digest = hashlib.sha256("\n".join(sorted(scope)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass
class _Story:
    """Where a new message belongs: its thread (None: a new one) and the messages it continues."""

    thread: Any
    parents: list[Any]  # notice rows (id, branch, sent, ancestors, status)
    key: str | None = None  # a new thread's key, when not the parser's


def _find_story(
    conn: Connection,
    notice: Notice,
    scope: frozenset[str],
    follow: int | None,
    known: _Known | None = None,
) -> _Story:
    """The message's story, found only among the stories of its own scope.

    A message with references continues exactly the stored messages it references (of its
    scope); several messages may continue the same one (NWS segments: branches). A message
    without references continues its thread's live branches (an edited feed item, the next
    Statuspage update), its thread found by key within the scope.
    """
    pairs = [(r.sender, r.identifier) for r in notice.references]
    thread = None
    parents: list[Any] = []
    if follow is not None:
        thread = conn.execute(Q.THREAD_BY_ID, {"thread_id": follow}).first()
    if pairs:
        if thread is None and known is not None:
            found: dict[int, Any] = {
                row.id: row for pair in pairs for row in known.messages.get(pair, ())
            }
        else:
            if thread is not None:
                statement, where = Q.REFERENCED_IN_THREAD, {"thread_id": thread.id}
            else:
                statement, where = Q.in_scope(Q.REFERENCED_IN_SCOPE, Q.REFERENCED_IN_SOURCE, scope)
            found = {
                row.id: row
                for sender, identifier in dict.fromkeys(pairs)
                for row in conn.execute(
                    statement, where | {"sender": sender, "identifier": identifier}
                )
            }
        parents = [found[i] for i in sorted(found)]
        if parents and thread is None:
            # Two stories joined by one message: it continues the newest of them.
            thread = conn.execute(Q.THREAD_BY_ID, {"thread_id": parents[-1].thread_id}).first()
            assert thread is not None  # a notice's thread row always exists
            parents = [p for p in parents if p.thread_id == thread.id]
    actual = notice.status is Status.ACTUAL
    own_key = _own_key(notice)
    if thread is None and known is not None:
        opened = sorted(
            (t for k in _thread_keys(notice, scope) if (t := known.threads.get(k)) is not None),
            key=lambda t: t.id,
        )
        chosen = next((t for t in opened if (t.status == Status.ACTUAL.value) == actual), None)
        if chosen is not None:  # read whole: its version and state change
            thread = conn.execute(Q.THREAD_BY_ID, {"thread_id": chosen.id}).first()
    elif thread is None:
        ordered = _thread_keys(notice, scope)
        if len(scope) == 1 and len(ordered) <= 2:
            statement, where = (
                Q.THREADS_BY_TWO_KEYS_IN_SOURCE,
                {
                    "key1": ordered[0],
                    "key2": ordered[-1],
                    "source": next(iter(scope)),
                },
            )
        else:
            statement, where = Q.THREADS_BY_KEY, {"keys": ordered, "scope": sorted(scope)}
        candidates = conn.execute(statement, where).all()
        thread = next((t for t in candidates if (t.status == Status.ACTUAL.value) == actual), None)
    if thread is not None and (thread.status == Status.ACTUAL.value) != actual:
        thread = None
    if thread is None:
        return _Story(None, [], own_key)
    if thread is not None and not pairs:
        parents = list(conn.execute(Q.LIVE_IN_THREAD, {"thread_id": thread.id}).all())
    return _Story(thread, parents)


def _is_late(
    conn: Connection, notice: Notice, scope: frozenset[str], story: _Story, writes: _Writes
) -> bool:
    """A CAP message that a stored message of its scope already references, or that is older
    than a message it continues, arrived late (a slow index, a replay)."""
    if any(notice.sent < p.sent for p in story.parents):
        return True
    ref = ref_key(notice.sender, notice.identifier)
    if writes.known is not None:
        return bool(writes.known.citing.get(ref, set()) & scope)
    if writes.ref_sources.get(ref, set()) & scope:
        return True
    return any(row.source in scope for row in conn.execute(Q.REFERENCING, {"ref": ref}))


def _ingest_one(
    conn: Connection,
    config: Config,
    channels: Mapping[str, Channel],
    notice: Notice,
    now: datetime,
    include_expired: bool,
    edits: str = "update",
    *,
    scope: frozenset[str] | None = None,
    follow: int | None = None,
    max_age: float | None = None,
    writes: _Writes | None = None,
) -> IngestResult:
    if writes is None:  # written when this one message is done
        writes = _Writes()
        one = _ingest_one(
            conn,
            config,
            channels,
            notice,
            now,
            include_expired,
            edits,
            scope=scope,
            follow=follow,
            max_age=max_age,
            writes=writes,
        )
        writes.flush(conn, now)  # not after an error: the transaction is undone then
        return one
    result = IngestResult()
    scope = scope if scope is not None else frozenset({notice.source})
    known = writes.known
    story = _find_story(conn, notice, scope, follow, known)
    thread = story.thread
    content_hash = notice.content_hash()
    if notice.kind in CAP_KINDS:
        # CAP freezes identifier+sent: the same message fetched again is the same message,
        # whichever thread it was first filed under.
        dup: Any
        if known is not None:
            dup = next(iter(known.messages.get((notice.sender, notice.identifier), ())), None)
        else:
            statement, where = Q.in_scope(Q.SAME_CAP_MESSAGE, Q.SAME_CAP_MESSAGE_IN_SOURCE, scope)
            dup = conn.execute(
                statement, where | {"sender": notice.sender, "identifier": notice.identifier}
            ).first()
        if dup is not None:
            result.unchanged += 1
            result.identifiers.add(notice.identifier)
            return result
    if thread is not None:
        dup = conn.execute(
            Q.SAME_CONTENT_IN_THREAD, {"thread_id": thread.id, "content_hash": content_hash}
        ).first()
        if dup is not None:
            result.unchanged += 1
            result.identifiers.add(notice.identifier)
            result.thread_keys.add(thread.thread_key)
            return result
        if edits == "ignore" and notice.kind not in CAP_KINDS:
            edited = conn.execute(
                Q.SAME_ITEM_IN_THREAD, {"thread_id": thread.id, "identifier": notice.identifier}
            ).first()
            if edited is not None:  # the operator asked not to republish edits
                result.unchanged += 1
                result.identifiers.add(notice.identifier)
                return result
    thread_key = (
        thread.thread_key
        if thread is not None
        else scoped_key(notice.source, story.key or notice.thread_key)
    )
    result.thread_keys.add(thread_key)
    result.identifiers.add(notice.identifier)
    version = (thread.latest_version if thread is not None else 0) + 1
    late = False
    if notice.kind in CAP_KINDS and notice.msg_type is not MsgType.END:
        # CAP says itself what a message does. One that newer news already replaced arrived
        # late: keep it, but never post it over what replaced it.
        late = _is_late(conn, notice, scope, story, writes)
    elif thread is not None and notice.msg_type is not MsgType.END and not notice.sent_estimated:
        # Without references, time orders a story: a message older than the newest one of its
        # thread arrived late (an old Statuspage update listed after "resolved") and never
        # reopens or overwrites it.
        newest_sent = conn.execute(Q.NEWEST_SENT_IN_THREAD, {"thread_id": thread.id}).scalar_one()
        late = newest_sent is not None and notice.sent < newest_sent
    if (
        not late
        and notice.kind not in CAP_KINDS
        and thread is not None
        and notice.msg_type is MsgType.ALERT
        and story.parents
    ):
        # An edited feed item (same id, new content): an update to readers.
        notice = notice.model_copy(update={"msg_type": MsgType.UPDATE})
    notice = notice.model_copy(update={"thread_key": thread_key, "version": version})
    closes = notice.msg_type.closes
    if thread is None:
        # A new story is written as it will be: one message, live unless it closes the story
        # (or arrived late: then the story stays as opened). Its latest message id, known
        # once the message is stored, is set with the rest of the poll's rows (`_Writes`).
        thread_id = Q.INSERT_THREAD.scalar(
            conn,
            {
                "thread_key": thread_key,
                "source": notice.source,
                "state": "active" if late else _state_after(notice.msg_type, 0 if closes else 1),
                "latest_version": version,
                "headline": notice.headline,
                "severity": notice.severity.value,
                "status": notice.status.value,
                "created_at": now,
                "updated_at": now,
            },
        )
        if known is not None:
            known.opened(thread_key, _Opened(thread_id, notice.source, notice.status.value))
    else:
        thread_id = thread.id
    parent_ids = [int(p.id) for p in story.parents]
    ancestors = sorted({a for p in story.parents for a in (p.ancestors or [])} | set(parent_ids))
    notice_id = Q.INSERT_NOTICE.scalar(
        conn,
        {
            "thread_id": thread_id,
            "version": version,
            "source": notice.source,
            "kind": notice.kind,
            "identifier": notice.identifier,
            "sender": notice.sender,
            "sent": notice.sent,
            "status": notice.status.value,
            "msg_type": notice.msg_type.value,
            "severity": notice.severity.value,
            "headline": notice.headline,
            "expires": notice.expires,
            "content_hash": content_hash,
            "data": notice.to_json_dict(),
            "original": notice.original,
            "original_content_type": notice.original_content_type,
            "signature": notice.signature.value,
            "received_at": now,
            "branch": "replaced" if late else ("closed" if closes else "live"),
            "over_at": notice.over_at,
            "ancestors": ancestors,
        },
    )
    changes.touch(conn, changes.NOTICES)  # feeds, pages and CAP documents hold it now
    if known is not None:
        known.stored(
            notice.sender,
            notice.identifier,
            _Stored(
                notice_id, thread_id, notice.sent, ancestors, notice.status.value, notice.source
            ),
        )
    for r in sorted({ref_key(r.sender, r.identifier) for r in notice.references}):
        writes.refs.append({"notice_id": notice_id, "ref": r})
        writes.ref_sources.setdefault(r, set()).add(notice.source)
        if known is not None:
            known.cited(r, notice.source)
    writes.terms += [{"notice_id": notice_id, "term": t} for t in sorted(terms_for(notice))]
    if thread is None:  # written whole above
        if not late:
            writes.latest[thread_id] = notice_id
    else:
        thread_values: dict[str, object] = {"latest_version": version}
        if not late:
            # It replaces (or, a cancel or an end, closes) exactly the messages it continues;
            # other branches of the story live on.
            if parent_ids:
                conn.execute(
                    Q.END_PARENTS,
                    {"parent_ids": parent_ids, "new_branch": "closed" if closes else "replaced"},
                )
            live = conn.execute(Q.COUNT_LIVE_IN_THREAD, {"thread_id": thread_id}).scalar_one()
            thread_values.update(
                latest_notice_id=notice_id,
                updated_at=now,
                state=_state_after(notice.msg_type, live),
            )
            writes.latest.pop(thread_id, None)  # an earlier message of this poll opened it
            if not closes:  # a cancel's own headline is rarely informative
                thread_values.update(headline=notice.headline, severity=notice.severity.value)
        conn.execute(Q.UPDATE_THREAD, {"thread_id": thread_id, **thread_values})
    result.stored.append(int(notice_id))

    if late:
        result.out_of_order += 1
        result.skipped.append((notice.identifier, "late: a newer message already replaced it"))
        log.info("notice %s is older than what replaced it: stored, not sent", notice.identifier)
        return result
    if is_stale(notice, now) and config.clarion.drop_expired and not include_expired:
        result.not_routed_stale += 1
        over = notice.over_at.astimezone(UTC) if notice.over_at else now
        result.skipped.append((notice.identifier, f"over at {over:%Y-%m-%dT%H:%M:%SZ}"))
        log.info("notice %s was over at %s: stored, not sent", notice.identifier, notice.over_at)
        return result
    if (
        max_age
        and thread is None
        and not notice.sent_estimated
        and notice.sent < now - timedelta(seconds=max_age)
    ):
        result.not_routed_old += 1
        result.skipped.append((notice.identifier, "older than the source's max_age"))
        log.info(
            "notice %s was sent %s, before max_age: stored, not sent",
            notice.identifier,
            notice.sent,
        )
        return result
    new_deliveries: list[dict[str, Any]] = []
    routed = [name for name in route(notice, config) if name in channels]
    if not routed:  # said, never silent: a Test no channel takes, a route that matches nothing
        status = notice.status.value
        why = "no route takes it" if status == "actual" else f"{status}: no channel takes it"
        result.skipped.append((notice.identifier, why))
    if (
        parent_ids
        or ancestors
        or any(getattr(channels[name], "subscription_kind", None) for name in routed)
    ):
        # What follows reads the outbox rows of earlier messages (which may be this poll's)
        # and this message's terms (matched against subscriptions): write them first.
        writes.flush(conn, now)
    if parent_ids:
        for channel_name in routed:
            result.superseded += outbox.supersede(conn, parent_ids, channel_name, version, now)
    # An update is worded as a new alert where nothing of its story was posted before on a
    # channel (there is nothing to reply to). Which it will be is known now unless an earlier
    # version is still on its way there: then both are rendered and the dispatcher picks.
    as_new = (
        notice.model_copy(update={"msg_type": MsgType.ALERT})
        if notice.msg_type is MsgType.UPDATE
        else None
    )
    before: dict[str, set[str]] = {}
    if as_new is not None and ancestors:
        for ch, st in conn.execute(
            select(deliveries.c.channel, deliveries.c.state).where(
                deliveries.c.notice_id.in_(ancestors), deliveries.c.channel.in_(routed)
            )
        ):
            before.setdefault(ch, set()).add(st)
    for channel_name in routed:
        channel = channels[channel_name]
        audience = getattr(channel, "subscription_kind", None)
        parts = 1
        if audience is not None:
            reached = subscription_matching.reach(
                conn, notice, notice_id, thread_id, channel_name, audience
            )
            if not reached:
                continue  # a subscriber channel, and nobody who subscribed follows this story
            # Queued in parts, so that several workers share a large fan-out.
            part_size = int(getattr(channel, "part_size", 0) or reached)
            parts = -(-reached // part_size)
        ctx = RenderContext(
            languages=tuple(config.clarion.languages),
            permalink=permalink(config, int(thread_id)),
            template=config.channels[channel_name].template,
            thread_id=int(thread_id),
        )
        states = before.get(channel_name, set())
        if as_new is None or "sent" in states:
            rendered = channel.render(notice, ctx)
        elif states & {"pending", "retry_wait", "sending"}:
            rendered = channel.render(notice, ctx).replace(as_new=channel.render(as_new, ctx))
        else:  # nothing of the story was, or will be, posted there first
            rendered = channel.render(as_new, ctx).replace(as_new=True)
        row = rendered.to_row()
        for part in range(parts):
            new_deliveries.append(
                {
                    "id": str(uuid.uuid4()),
                    "notice_id": notice_id,
                    "thread_id": thread_id,
                    "channel": channel_name,
                    "part": part,
                    "version": version,
                    "msg_type": notice.msg_type.value,
                    "payload": {**row, "part": [part, parts]} if parts > 1 else row,
                    "cost": rendered.cost,
                    "severity_rank": notice.severity.rank,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    if new_deliveries:  # queued with the rest of the poll's (`_Writes`)
        writes.deliveries += new_deliveries
        writes.details += [f"queued {notice.msg_type.value} v{version}"] * len(new_deliveries)
        result.deliveries += len(new_deliveries)
    return result


def _state_after(msg_type: MsgType, live: int) -> str:
    """A story's state once a message is stored, with `live` branches left."""
    if live:
        return "active"
    return {MsgType.CANCEL: "cancelled", MsgType.END: "ended"}.get(msg_type, "active")


def live_branches(store: Store, source: str) -> dict[str, int]:
    """The source's messages still live (not replaced, cancelled or ended): identifier → id."""
    with store.read() as conn:
        return {
            r.identifier: int(r.id)
            for r in conn.execute(
                select(notices.c.identifier, notices.c.id).where(
                    notices.c.source == source,
                    notices.c.branch == "live",
                    notices.c.msg_type.not_in((MsgType.CANCEL.value, MsgType.END.value)),
                )
            )
        }


def end_branches(
    store: Store,
    config: Config,
    channels: Mapping[str, Channel],
    notice_ids: Iterable[int],
    *,
    source: str,
    reason: str,
    now: datetime | None = None,
) -> IngestResult:
    """End messages that left a source listing only what is active (the third way a story ends).

    Each still-live message gets an END: a copy of it saying it is over, which continues that
    message alone (a segment of an NWS product ends on its own) and goes through the same
    routing and outbox as everything else (it posts only where that message was posted).
    """
    now = now or datetime.now(UTC)
    result = IngestResult()
    scope = story_scope(config, source)
    writes = _Writes()
    with store.write() as conn:
        if conn.dialect.name == "postgresql":
            _storing_notices(conn)
        for notice_id in sorted(notice_ids):
            row = conn.execute(
                select(notices.c.data, notices.c.branch, threads.c.thread_key)
                .select_from(notices.join(threads, threads.c.id == notices.c.thread_id))
                .where(notices.c.id == notice_id)
            ).first()
            if row is None or row.branch != "live":
                continue
            latest = Notice.model_validate(row.data)
            ended = latest.model_copy(
                update={
                    "identifier": f"{latest.identifier}#ended",
                    "sent": max(now, latest.sent),  # never "older" than what it ends
                    "msg_type": MsgType.END,
                    "references": [
                        Reference(
                            sender=latest.sender,
                            identifier=latest.identifier,
                            sent=latest.sent.isoformat(),
                        )
                    ],
                    "note": reason,
                    "thread_key": row.thread_key,
                    "original": None,
                    "original_content_type": None,
                }
            )
            one = _ingest_one(
                conn, config, channels, ended, now, include_expired=True, scope=scope, writes=writes
            )
            result += one
            result.ended += len(one.stored)
        writes.flush(conn, now)
    return result
