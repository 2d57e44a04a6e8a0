"""Engines and transactions for SQLite (embedded default) and PostgreSQL.

SQLite: WAL, foreign keys on, and write transactions begin with `BEGIN IMMEDIATE`, so the
single writer is decided when a transaction starts (a deferred transaction that reads and then
writes can fail with SQLITE_BUSY at once instead of waiting). PostgreSQL: plain READ COMMITTED;
the outbox's claims use `FOR UPDATE SKIP LOCKED`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError

MIGRATIONS = Path(__file__).parent / "migrations"


log = logging.getLogger(__name__)


def json_text(value: Any) -> str:
    """A JSON column's text: orjson's (a notice's data, an outbox row's payload: ingest wrote
    each with the standard library's encoder at 50-130 us, a tenth of that with orjson).

    What orjson refuses, the standard encoder writes: an integer beyond 64 bits (a CAP
    `<size>` can be any number), a lone surrogate; both read back the same. NaN and infinity
    are null either way: the standard encoder's `NaN` is JSON no reader takes (PostgreSQL
    refused the row)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(_finite(value))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=json_text,
        )
        _sqlite_setup(engine)
        return engine
    if parsed.drivername in ("postgresql", "postgres"):
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True, json_serializer=json_text)


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("clarion_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


# The database itself failing: gone, restarting, failing over, locked past its timeout. Not
# the fault of what was being written: what failed is tried again as a whole.
DATABASE_AWAY: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


# pg_advisory_lock key for migrations: any constant, the same in every Clarion process.
MIGRATION_LOCK = 0x436C6172696F6E  # "Clarion"
CONNECT_PATIENCE = 5.0  # seconds a new connection is waited for (see Store._connect)


class Store:
    """The database: `write()` and `read()` give a connection inside one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite has one writer at a time. Threads of one process (lanes, deliveries in
        # flight, the web) that race for it meet SQLite's busy handler, which sleeps 1, 2,
        # 5… ms between tries: under load most of a delivery's time went to those sleeps
        # (6.6 ms a delivery, 16 ms of it waiting across 8 threads). They queue on this lock
        # instead, handed over at once; other processes still wait through busy_timeout.
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else None
        from clarion.store.changes import Changes

        self.changes = Changes(self)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        if self._write_lock is None:
            with self._write() as conn:
                yield conn
            return
        with self._write_lock, self._write() as conn:
            yield conn

    def _connect(self) -> Connection:
        """A connection, waiting up to `CONNECT_PATIENCE` seconds for the server to take one:
        after a backend is killed (kill -9, the OOM killer), PostgreSQL resets every
        connection and refuses new ones while it recovers ("the database system is in
        recovery mode"), for a second or two. Nothing has run on a connection not yet made,
        so trying again is always safe; what fails inside a transaction is not retried here."""
        deadline = time.monotonic() + CONNECT_PATIENCE
        pause = 0.05
        while True:
            try:
                return self.engine.connect()
            except (OperationalError, InterfaceError):
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("the database refused a connection; trying again in %.2f s", pause)
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._connect() as conn:
            conn = conn.execution_options(clarion_write=True)
            conn.info.pop("clarion_public", None)  # `info` outlives a checkout: start clean
            try:
                with conn.begin():
                    yield conn
            finally:
                touched = conn.info.pop("clarion_public", None)
        if touched is None:
            return
        # Committed (an exception would have left above): what it touched is stale now.
        self.changes.committed(touched)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._connect() as conn, conn.begin():
            yield conn

    def ping(self) -> None:
        """Read from the database (a health check); raises when it cannot be read."""
        with self.read() as conn:
            conn.execute(text("SELECT 1"))

    def listener(self, channel: str) -> Listener:
        return Listener(self, channel)

    def alembic_config(self) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        return cfg

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (safe to run every start).

        On PostgreSQL every process migrates under one advisory lock: `clarion web` and the
        workers, started together on a new database, would otherwise race to create the same
        tables (and all but one would crash). The others wait, then find nothing left to do.
        """
        cfg = self.alembic_config()
        if self.is_sqlite:
            command.upgrade(cfg, "head")
            return
        from sqlalchemy import text

        try:
            if self.is_current():  # the usual start: nothing to do, no need to queue for it
                return
        except Exception:  # a new database (no version table yet): migrate below
            pass
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            conn.commit()
            try:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
                conn.commit()

    def is_current(self) -> bool:
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self.alembic_config()).get_current_head()
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        return bool(current == head)

    def table_names(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    def close(self) -> None:
        self.changes.close()
        self.engine.dispose()


def open_store(url: str, *, upgrade: bool = True) -> Store:
    store = Store(make_engine(url))
    if upgrade:
        store.upgrade()
    return store


class Listener:
    """Waits for a NOTIFY on PostgreSQL (or just sleeps, on SQLite), so idle workers wake the
    moment work is queued instead of at their next poll. A lost connection is reopened at the
    next wait; until then the wait is a plain sleep, so nothing ever hangs on it."""

    def __init__(self, store: Store, channel: str) -> None:
        self.store = store
        self.channel = channel
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        url = self.store.engine.url.set(drivername="postgresql")
        conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
        conn.execute(f"LISTEN {self.channel}")
        return conn

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """True when woken by a notification, False when the time ran out."""
        if self.store.is_sqlite:
            if stop is not None:
                stop.wait(timeout)
            else:
                time.sleep(timeout)
            return False
        try:
            if self._conn is None:
                self._conn = self._connect()
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                return True
            return False
        except Exception as exc:  # the database restarted, or a network blip: poll meanwhile
            log.warning("LISTEN %s: %s; polling until it is back", self.channel, exc)
            self.close()
            time.sleep(min(timeout, 1.0))
            return False

    def close(self) -> None:
        if self._conn is not None:
            with suppress(Exception):
                self._conn.close()
            self._conn = None
