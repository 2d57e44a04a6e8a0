"""What the public sees changed: the signal that keeps every web process's snapshot of the
public surface current without asking the database on each request.

Two kinds of change: `NOTICES` (a notice was stored: feeds, lists, CAP documents, pages) and
`POSTS` (a delivery moved: the notice pages show where each was posted). A write transaction
says what it changed with `touch(conn, kind)`; once it commits:

- this process's counter for that kind moves at once;
- on PostgreSQL, every other process hears it by `NOTIFY clarion_public` (sent inside the
  transaction, so it is delivered only if, and when, the transaction commits);
- on SQLite, a stamp file beside the database is replaced (a new inode), which every process
  sees with one `stat` per request.

`Changes.version(kinds)` is what a cached answer was built at; a different version means it
may be stale.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text

if TYPE_CHECKING:
    from clarion.store.db import Store

log = logging.getLogger(__name__)

NOTICES = "notices"
POSTS = "posts"
KINDS = (NOTICES, POSTS)
CHANNEL = "clarion_public"  # LISTEN/NOTIFY on PostgreSQL


def touch(conn: Connection, kind: str) -> None:
    """Record, inside a write transaction, that it changes what the public sees."""
    assert kind in KINDS
    pending: set[str] = conn.info.setdefault("clarion_public", set())
    if kind in pending:
        return
    pending.add(kind)
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, :kind)"), {"channel": CHANNEL, "kind": kind})


class Changes:
    """One process's view of the change counters (see the module's docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.local = dict.fromkeys(KINDS, 0)
        self.stamps: dict[str, Path] = {}
        db = store.engine.url.database if store.is_sqlite else None
        if db and db != ":memory:" and not db.startswith("file:"):
            base = Path(db).resolve()
            self.stamps = {k: base.with_name(f"{base.name}.{k}-changed") for k in KINDS}
        self._listening = False
        self._closed = threading.Event()
        self.reliable = True  # False while PostgreSQL notifications may be missed

    def committed(self, kinds: Iterable[str]) -> None:
        """A transaction that touched `kinds` committed (called by `Store.write`)."""
        kinds = list(kinds)
        with self.lock:
            for k in kinds:
                self.local[k] += 1
        for k in kinds:
            path = self.stamps.get(k)
            if path is not None:
                self._restamp(path)

    @staticmethod
    def _restamp(path: Path) -> None:
        """Set the stamp's modification time to now, to the nanosecond (given explicitly, so
        the file system's clock tick does not matter): readers compare it by `stat` alone.
        One system call; writing and renaming a new file each time cost a tenth of a
        delivery's time on SQLite (one per commit that moves a delivery)."""
        now = time.time_ns()
        try:
            os.utime(path, ns=(now, now))
        except FileNotFoundError:
            try:
                path.touch()
                os.utime(path, ns=(now, now))
            except OSError as exc:
                log.warning("cannot mark %s changed: %s", path, exc)
        except OSError as exc:  # a read-only directory: other processes will not hear of it
            log.warning("cannot mark %s changed: %s", path, exc)

    def version(self, kinds: Iterable[str]) -> tuple[Any, ...]:
        """What these kinds of change stand at now; no database round trip."""
        if not self.store.is_sqlite:
            self._listen()
        out: list[Any] = []
        for k in kinds:
            out.append(self.local[k])
            path = self.stamps.get(k)
            if path is not None:
                try:
                    st = os.stat(path)
                    out.append((st.st_ino, st.st_mtime_ns))
                except FileNotFoundError:
                    out.append(None)
        return tuple(out)

    # --- PostgreSQL: hear other processes' commits ---------------------------------------------

    def _listen(self) -> None:
        if self._listening:
            return
        with self.lock:
            if self._listening:
                return
            self._listening = True
            self.reliable = False  # until the LISTEN is in place
        threading.Thread(target=self._listener, daemon=True, name="public-changes").start()

    def close(self) -> None:
        """Stop listening (the store is closing)."""
        self._closed.set()

    def _listener(self) -> None:
        import psycopg

        while not self._closed.is_set():
            conn = None
            try:
                url = self.store.engine.url.set(drivername="postgresql")
                conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
                conn.execute(f"LISTEN {CHANNEL}")
                with self.lock:  # whatever happened while not listening: assume everything
                    for k in KINDS:
                        self.local[k] += 1
                self.reliable = True
                while not self._closed.is_set():
                    for note in conn.notifies(timeout=1.0):
                        if note.payload in self.local:
                            with self.lock:
                                self.local[note.payload] += 1
            except Exception as exc:
                self.reliable = False
                log.warning(
                    "LISTEN %s: %s; the public pages bypass their cache meanwhile", CHANNEL, exc
                )
                self._closed.wait(1.0)
            finally:
                if conn is not None:
                    with suppress(Exception):
                        conn.close()
