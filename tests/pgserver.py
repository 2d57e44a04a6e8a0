"""A throwaway PostgreSQL server for fault tests: its own data directory and port, made with the
installed server's `initdb` and `pg_ctl`, stopped and deleted afterwards.

A test never stops, restarts or reconfigures a server it did not start: the machine's own
cluster on 5432 belongs to everyone else. PostgreSQL refuses to run as root, so as root (CI)
the server runs as the `postgres` system user, which the Debian package creates.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def server_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3])
    return found[-1].parent if found else None


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@dataclass
class Server:
    bin: Path
    data: Path
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            _as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), *args]),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def ready(self) -> bool:
        cmd = [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"]
        return subprocess.run(cmd).returncode == 0

    def restart(self) -> None:
        self.ctl("restart", "-m", "fast", "-w")


@contextmanager
def throwaway_postgres() -> Iterator[Server]:
    binary = server_bin()
    if binary is None:
        raise RuntimeError("no PostgreSQL server installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="clarion-pg-"))
    data, log = root / "data", root / "server.log"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    try:
        subprocess.run(
            _as_owner(
                [
                    str(binary / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        server = Server(binary, data, port, log)
        opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off"
        server.ctl("start", "-w", "-o", opts)
        deadline = time.monotonic() + 30
        while not server.ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the throwaway PostgreSQL did not start: {log.read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_owner([str(binary / "pg_ctl"), "-D", str(data), "stop", "-m", "immediate"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)
