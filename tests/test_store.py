"""Migrations replayed from nothing give exactly the declared schema, on both backends."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from clarion.store import Store, open_store
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
