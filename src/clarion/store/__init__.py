"""Persistence: schema, engine set-up and migrations, for SQLite and PostgreSQL alike."""

from clarion.store.db import DATABASE_AWAY, Store, open_store

__all__ = ["DATABASE_AWAY", "Store", "open_store"]
