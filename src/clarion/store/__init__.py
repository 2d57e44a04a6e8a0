"""Persistence: schema, engine set-up and migrations, for SQLite and PostgreSQL alike."""

from clarion.store.db import Store, open_store

__all__ = ["Store", "open_store"]
