"""Migrations replayed from nothing give exactly the declared schema, on both backends."""

from __future__ import annotations

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
