"""Migrations replayed from nothing give exactly the declared schema, on both backends."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import given, settings
from hypothesis import strategies as st

from clarion.store import Store, open_store
from clarion.store.db import json_text
from clarion.store.schema import metadata


def test_migrations_yield_declared_schema(db_url: str) -> None:
    store = open_store(db_url)
    try:
        with store.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, metadata)
        assert diff == []
        assert store.is_current()
        assert set(store.table_names()) == set(metadata.tables) | {"alembic_version"}
    finally:
        store.close()


def test_upgrade_is_idempotent(store: Store) -> None:
    store.upgrade()
    store.upgrade()
    assert store.is_current()


def test_the_terms_migration_indexes_notices_already_stored(db_url: str) -> None:
    """A database from before `notice_terms` (revision 0004) with a notice in it: upgrading
    fills the index, so filters find what was stored before."""
    import json
    from datetime import UTC, datetime

    import sqlalchemy as sa
    from alembic import command

    from clarion.sources.cap import parse_cap
    from clarion.store.schema import notice_terms
    from tests.helpers import demo_cap

    store = open_store(db_url, upgrade=False)
    try:
        command.upgrade(store.alembic_config(), "0004")
        notice = parse_cap(demo_cap(0))[0]
        now = datetime(2026, 11, 27, tzinfo=UTC)
        with store.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO threads (id, thread_key, source, state, latest_version, "
                    "headline, severity, status, created_at, updated_at) VALUES (1, 'k', 'nws', "
                    "'active', 1, 'h', 'moderate', 'actual', :now, :now)"
                ),
                {"now": now.replace(tzinfo=None)},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO notices (id, thread_id, version, source, kind, identifier, "
                    "sender, sent, status, msg_type, severity, headline, content_hash, data, "
                    "signature, received_at) VALUES (1, 1, 1, 'nws', 'cap', 'i', 's', :now, "
                    "'actual', 'alert', 'moderate', 'h', 'x', :data, 'unsigned', :now)"
                ),
                {"now": now.replace(tzinfo=None), "data": json.dumps(notice.to_json_dict())},
            )
        store.upgrade()
        with store.read() as conn:
            terms = {r.term for r in conn.execute(sa.select(notice_terms))}
        assert {"area:mtz014", "area:ugc=mtz014", "category:met", "lang:en"} <= terms
    finally:
        store.close()


@pytest.mark.postgres
def test_processes_starting_together_migrate_once() -> None:
    """`clarion web` and workers started at once on a new PostgreSQL database: one migrates,
    the others wait for it (an advisory lock) instead of crashing on the same CREATE TABLE."""
    import threading

    from tests.conftest import pg_schema_url

    gen = pg_schema_url()
    url = next(gen)
    try:
        start = threading.Barrier(4)
        errors: list[BaseException] = []
        stores: list[Store] = []

        def boot() -> None:
            start.wait()
            try:
                stores.append(open_store(url))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=boot) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert all(s.is_current() for s in stores)
        for s in stores:
            s.close()
    finally:
        gen.close()


def test_the_stories_migration_makes_stored_threads_linear_branches(db_url: str) -> None:
    """A database from before branches (revision 0011): each stored story becomes one line of
    messages, each replacing the one before, the last live (or closed by a cancel); push
    receipts are kept, now per source."""
    from datetime import datetime

    import sqlalchemy as sa
    from alembic import command

    from clarion.store.schema import notices, push_receipts

    store = open_store(db_url, upgrade=False)
    try:
        command.upgrade(store.alembic_config(), "0011")
        now = datetime(2026, 11, 27).replace(tzinfo=None)
        with store.engine.begin() as conn:
            for tid, types in ((1, ("alert", "update", "cancel")), (2, ("alert", "update"))):
                conn.execute(
                    sa.text(
                        "INSERT INTO threads (id, thread_key, source, state, latest_version, "
                        "headline, severity, status, created_at, updated_at) VALUES (:id, :k, "
                        "'nws', 'active', :n, 'h', 'moderate', 'actual', :now, :now)"
                    ),
                    {"id": tid, "k": f"k{tid}", "n": len(types), "now": now},
                )
                for v, t in enumerate(types, 1):
                    conn.execute(
                        sa.text(
                            "INSERT INTO notices (id, thread_id, version, source, kind, "
                            "identifier, sender, sent, status, msg_type, severity, headline, "
                            "expires, content_hash, data, signature, received_at) VALUES (:id, "
                            ":t, :v, 'nws', 'cap', :i, 's', :now, 'actual', :m, 'moderate', 'h', "
                            ":now, :h, '{}', 'unsigned', :now)"
                        ),
                        {"id": tid * 10 + v, "t": tid, "v": v, "i": f"i{tid}{v}", "m": t,
                         "h": f"h{tid}{v}", "now": now},
                    )  # fmt: skip
            conn.execute(
                sa.text(
                    "INSERT INTO push_receipts (webhook_id, source, received_at) "
                    "VALUES ('msg-1', 'ops', :now)"
                ),
                {"now": now},
            )
        store.upgrade()
        with store.read() as conn:
            got = {
                r.id: (r.branch, r.ancestors, r.over_at is not None)
                for r in conn.execute(sa.select(notices))
            }
            receipts = [(r.source, r.webhook_id) for r in conn.execute(sa.select(push_receipts))]
        assert got == {
            11: ("replaced", [], True),
            12: ("replaced", [11], True),
            13: ("closed", [11, 12], True),
            21: ("replaced", [], True),
            22: ("live", [21], True),
        }
        assert receipts == [("ops", "msg-1")]
    finally:
        store.close()


def test_the_place_migration_indexes_names_already_stored(db_url: str) -> None:
    """Notices stored before search by name (revision 0012) get their `place:` terms."""
    import sqlalchemy as sa
    from alembic import command

    from clarion.store.schema import notice_terms
    from tests.helpers import config, demo_cap, ingest_bytes

    store = open_store(db_url, upgrade=False)
    try:
        command.upgrade(store.alembic_config(), "0012")
        cfg = config()
        # No channels: today's outbox rows need columns a 0012 database has not got yet.
        ingest_bytes(store, cfg, {}, demo_cap(0))
        with store.engine.begin() as conn:  # as a notice stored before 0013 has them: none
            conn.execute(sa.delete(notice_terms).where(notice_terms.c.term.like("place:%")))
        store.upgrade()
        with store.read() as conn:
            places = {
                r.term
                for r in conn.execute(
                    sa.select(notice_terms.c.term).where(notice_terms.c.term.like("place:%"))
                )
            }
        assert {"place:lewis", "place:clark", "place:central", "place:southern"} <= places
    finally:
        store.close()


def test_the_parts_migration_keeps_deliveries_and_their_history(db_url: str) -> None:
    """0016 rebuilds `deliveries` on SQLite (a unique constraint changes): rows, and the events
    and sends that reference them, come through; foreign keys are on again afterwards."""
    from datetime import UTC, datetime

    import sqlalchemy as sa
    from alembic import command

    from clarion.store.schema import deliveries, delivery_events
    from tests.helpers import config, demo_cap, ingest_bytes

    store = open_store(db_url, upgrade=False)
    try:
        command.upgrade(store.alembic_config(), "0015")
        ingest_bytes(store, config(), {}, demo_cap(0))  # a notice and its thread
        now = datetime(2026, 11, 29, tzinfo=UTC)
        with store.engine.begin() as conn:  # a delivery and its event, as 0015 stored them
            conn.execute(
                sa.text(
                    "INSERT INTO deliveries (id, notice_id, thread_id, channel, version, "
                    "msg_type, state, payload, attempts, next_attempt_at, created_at, "
                    "updated_at, cost, severity_rank) VALUES ('d1', 1, 1, 'preview', 1, "
                    "'alert', 'sent', '{}', 1, :now, :now, :now, 0, 3)"
                ),
                {"now": now.replace(tzinfo=None)},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO delivery_events (delivery_id, at, to_state, attempt) "
                    "VALUES ('d1', :now, 'sent', 1)"
                ),
                {"now": now.replace(tzinfo=None)},
            )
        store.upgrade()
        with store.read() as conn:
            [d] = conn.execute(sa.select(deliveries)).all()
            assert (d.id, d.part, d.state) == ("d1", 0, "sent")
            assert (
                conn.execute(sa.select(sa.func.count()).select_from(delivery_events)).scalar() == 1
            )
            if store.is_sqlite:
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        with store.engine.begin() as conn:  # a second part of the same notice and channel
            conn.execute(
                sa.insert(deliveries).values(
                    id="d2", notice_id=1, thread_id=1, channel="preview", version=1,
                    msg_type="alert", state="pending", payload={}, next_attempt_at=now,
                    created_at=now, updated_at=now, part=1,
                )
            )  # fmt: skip
    finally:
        store.close()


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson refuses those, the standard encoder takes them
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),  # lone surrogates too
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_a_json_columns_text_reads_back_as_what_was_stored(value: object) -> None:
    text = json_text(value)
    assert json.loads(text) == value


def test_a_json_columns_text_is_what_every_reader_takes() -> None:
    """NaN and infinity (a platform's garbage answer) are null, not the standard encoder's
    `NaN`, which no JSON reader takes (PostgreSQL refuses the row); integer keys are strings."""
    assert json_text({"a": float("nan"), "b": [float("inf")], 3: "x"}) == (
        '{"a":null,"b":[null],"3":"x"}'
    )
    big = json_text({"big": 2**70, "s": "\ud800"})
    assert big == '{"big": 1180591620717411303424, "s": "\\ud800"}'


def test_json_columns_are_written_by_json_text(store: Store) -> None:
    from clarion.store.schema import sources

    with store.write() as conn:
        conn.execute(
            sa.insert(sources).values(
                name="s", kind="cap", cursor={"n": float("nan"), "at": "é", "big": 2**70}
            )
        )
    with store.read() as conn:
        raw = conn.execute(sa.text("SELECT CAST(cursor AS TEXT) FROM sources")).scalar_one()
        cursor = conn.execute(sa.select(sources.c.cursor)).scalar_one()
    assert cursor == {"n": None, "at": "é", "big": 2**70}
    assert raw == '{"n": NaN, "at": "\\u00e9", "big": 1180591620717411303424}'.replace(
        "NaN", "null"
    )  # a 70-bit integer: the standard encoder's text, NaN still null


def test_a_driver_insert_stores_what_a_core_insert_stores(store: Store) -> None:
    """`DriverInsert` (ingest's writes): each value bound by its column's type, a left-out
    column given its Python default as Core gives it, rows of different columns in one call;
    a time stored by it is found by Core comparing with the same time (on SQLite, its text)."""
    from datetime import UTC, datetime, timedelta

    from clarion.store.driver import DriverInsert
    from clarion.store.schema import notices, threads

    at = datetime(2026, 12, 6, 15, 0, 0, 250, tzinfo=UTC)
    thread = {
        "thread_key": "s/k",
        "source": "s",
        "state": "active",
        "latest_version": 1,
        "headline": "H",
        "severity": "minor",
        "status": "actual",
        "created_at": at,
        "updated_at": at,
    }
    notice = {
        "version": 1,
        "source": "s",
        "kind": "cap",
        "identifier": "i",
        "sender": "x",
        "sent": at - timedelta(hours=1),
        "status": "actual",
        "msg_type": "alert",
        "severity": "minor",
        "headline": "H",
        "content_hash": "h",
        "data": {"é": [1.5, None], "n": float("nan")},
        "signature": "unsigned",
        "received_at": at,
        "ancestors": [],
    }
    with store.write() as conn:
        thread_id = DriverInsert(threads, returning="id").scalar(conn, thread)
        notice_id = DriverInsert(notices, returning="id").scalar(
            conn, {**notice, "thread_id": thread_id}
        )
        DriverInsert(notices).many(  # a second set of columns: expires and original given
            conn,
            [
                {**notice, "thread_id": thread_id, "version": 2, "content_hash": "h2",
                 "expires": at, "original": b"<alert/>"},
            ],
        )  # fmt: skip
    with store.read() as conn:
        [t] = conn.execute(sa.select(threads).where(threads.c.created_at == at)).all()
        found = conn.execute(
            sa.select(notices).where(notices.c.received_at == at).order_by(notices.c.version)
        ).all()
    assert t.id == thread_id and t.latest_notice_id is None
    assert len(found) == 2 and found[0].id == notice_id
    first, second = found
    assert first.branch == "live" and first.data == {"é": [1.5, None], "n": None}
    assert first.sent == at - timedelta(hours=1) and first.expires is None
    assert second.expires == at and second.original == b"<alert/>" and second.ancestors == []


def test_a_driver_insert_refuses_a_row_it_cannot_store_whole() -> None:
    from clarion.store.driver import DriverInsert
    from clarion.store.schema import deliveries, threads

    with pytest.raises(ValueError, match=r"threads\.latest_version needs a value"):
        DriverInsert(threads)._build(frozenset({"thread_key", "source", "state"}))
    with pytest.raises(AssertionError, match="no column"):
        DriverInsert(threads)._build(frozenset({"thread_key", "colour"}))
    statement, defaults = DriverInsert(deliveries)._build(
        frozenset(
            {"id", "notice_id", "thread_id", "channel", "version", "msg_type", "state",
             "payload", "next_attempt_at", "created_at", "updated_at"}
        )
    )  # fmt: skip
    assert defaults == {"attempts": 0, "cost": 0.0, "severity_rank": 0}  # Core's defaults
    assert "part" not in statement.sql  # the server's default
