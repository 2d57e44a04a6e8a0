"""Shared fixtures: real payloads, and a store on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from clarion.store import Store, open_store

FIXTURES = Path(__file__).parent / "fixtures"
PG_URL = os.environ.get("CLARION_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 random bytes, for tests only


@pytest.fixture(autouse=True)
def _loopback_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fake platform and feed server in the tests is on loopback, which the SSRF guard
    refuses by default: allow it, as an operator would for a server on their own network.
    The guard's own tests (test_ssrf.py) take this away."""
    monkeypatch.setenv("CLARION_ALLOW_NETWORKS", "127.0.0.0/8,::1/128")


def fixture_bytes(rel: str) -> bytes:
    return (FIXTURES / rel).read_bytes()


def _pg_available() -> str | None:
    try:
        engine = sa.create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"PostgreSQL at {PG_URL} is not reachable: {exc}"


_PG_PROBLEM: str | None = None
_PG_CHECKED = False


def pg_schema_url() -> Iterator[str]:
    """A fresh schema on the real PostgreSQL server, dropped afterwards."""
    global _PG_PROBLEM, _PG_CHECKED
    if not _PG_CHECKED:
        _PG_PROBLEM, _PG_CHECKED = _pg_available(), True
    if _PG_PROBLEM:
        if os.environ.get("CI"):
            pytest.fail(_PG_PROBLEM)  # CI must test PostgreSQL, never skip it
        pytest.skip(_PG_PROBLEM)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, pool_pre_ping=True)  # survives a server restart
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'clarion.db'}"
    else:
        yield from pg_schema_url()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'clarion.db'}")
    yield s
    s.close()
