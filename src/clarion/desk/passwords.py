"""Where password checks run: threads of their own at the lowest priority, never the pool
every synchronous handler shares.

Argon2 is made to be slow (~50 ms of the machine's cores and 64 MiB a check, by design). Run
in Starlette's shared thread pool, 40 concurrent failed logins held every one of its threads,
and `/healthz`, the feeds and the page waited behind them (0.2 s became 13.4 s; `make bench`
measured a p99 284 times idle's). Now:

- a login is admitted to the shared pool only while fewer than `workers` are (others wait on
  the event loop, holding no thread; past `workers + waiting` waiting, a login is refused at
  once: 429), so logins hold at most `workers` of its threads;
- the Argon2 check itself runs on this pool's own threads, scheduled at the lowest priority
  (SCHED_IDLE on Linux): it takes only the CPU nobody else wants. Nothing else runs there, so
  no database lock is ever held by a thread that waits for CPU.

`make bench` (logins): /healthz p99 during a flood of 40 failing clients, against idle.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

T = TypeVar("T")


class Busy(RuntimeError):
    """Too many logins waiting at once: refused without waiting."""


def default_workers() -> int:
    """Half the machine's cores (at least one)."""
    return max(1, (os.cpu_count() or 2) // 2)


def _lowest_priority() -> None:
    """This thread (and the threads Argon2 starts for its lanes, which inherit it) at the
    lowest scheduling priority: SCHED_IDLE on Linux, else the highest nice value (Linux
    schedules threads one by one). Elsewhere this does nothing."""
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, tid, 19)


class PasswordPool:
    def __init__(self, workers: int | None = None, waiting: int = 64) -> None:
        self.workers = workers or default_workers()
        self.waiting = waiting
        self._executor = ThreadPoolExecutor(
            self.workers, thread_name_prefix="clarion-passwords", initializer=_lowest_priority
        )
        self._slots = asyncio.Semaphore(self.workers)  # bound to the loop on first use
        self._lock = threading.Lock()
        self._admitted = 0

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold one of `workers` places (waiting for one on the event loop); Busy when
        `workers + waiting` logins are already admitted or waiting."""
        with self._lock:
            if self._admitted >= self.workers + self.waiting:
                raise Busy("too many logins at once")
            self._admitted += 1
        try:
            async with self._slots:
                yield
        finally:
            with self._lock:
                self._admitted -= 1

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on one of the pool's threads, waited for (from an admitted login)."""
        return self._executor.submit(fn, *args).result()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
