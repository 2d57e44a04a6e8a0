"""Caps and money: X's prices per post, the link policy, daily caps and a monthly budget that
lets severe notices through first. Never silent: the delivery says why it waits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from clarion.channels import build_channels, channel_limits
from clarion.channels.base import RenderContext, close_all
from clarion.cli import app
from clarion.delivery.dispatcher import Dispatcher
from clarion.model import Severity
from clarion.store import Store
from tests.fakes.x import FakeX
from tests.helpers import NOW, config, deliveries, demo_cap, ingest_bytes, rows

X_ENV = {"X_CK": FakeX.CONSUMER_KEY, "X_CS": "cs", "X_AT": "at", "X_ATS": "ats"}


def x_config(extra: str = "", db: str = "") -> str:
    return f"""
[clarion]
drop_expired = false
{db}
[channels.x]
kind = "x"
consumer_key = {{ env = "X_CK" }}
consumer_secret = {{ env = "X_CS" }}
access_token = {{ env = "X_AT" }}
access_token_secret = {{ env = "X_ATS" }}
{extra}
[[routes]]
channels = ["x"]
"""


@pytest.fixture
def fake_x(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeX]:
    for k, v in X_ENV.items():
        monkeypatch.setenv(k, v)
    with FakeX() as f:
        yield f


def _notice(i: int, severity: str = "Moderate") -> bytes:
    return (
        demo_cap(0)
        .replace(b"MT</identifier>", f"MT-{i}</identifier>".encode())
        .replace(b"<severity>Severe", f"<severity>{severity}".encode())
        .replace(b"<headline>Flash", f"<headline>[{i}] Flash".encode())
    )


def test_x_prices_and_link_policy(fake_x: FakeX) -> None:
    from clarion.sources.cap import parse_cap

    notice = parse_cap(demo_cap(0))[0]
    ctx = RenderContext(("en",), "https://clarion.example/notices/1")
    keep = build_channels(config(x_config()))
    p = keep["x"].render(notice, ctx)
    assert p.fields["has_url"] and p.cost == 0.20
    drop = build_channels(config(x_config('link_policy = "drop_when_costly"')))
    q = drop["x"].render(notice, ctx)
    assert not q.fields["has_url"] and q.cost == 0.015 and "http" not in q.text
    free = build_channels(config(x_config('plan = "public_utility"')))
    assert free["x"].render(notice, ctx).cost == 0.0
    for c in (keep, drop, free):
        close_all(c)


def _run(store: Store, text: str, fake: FakeX) -> tuple[Any, Any, Dispatcher]:
    cfg = config(text)
    chans = build_channels(cfg)
    chans["x"].client.session = fake.session()  # type: ignore[attr-defined]
    return (
        cfg,
        chans,
        Dispatcher(
            store,
            chans,
            clock=lambda: NOW,
            caps=channel_limits(cfg),
            drop_expired=cfg.clarion.drop_expired,
        ),
    )


def test_budget_binds_but_severe_notices_still_go(fake_x: FakeX, sqlite_store: Store) -> None:
    cfg, chans, disp = _run(sqlite_store, x_config("monthly_budget = 0.40"), fake_x)
    ingest_bytes(sqlite_store, cfg, chans, _notice(1))  # 0.20: within 80 % of 0.40
    disp.run_until_idle()
    ingest_bytes(sqlite_store, cfg, chans, _notice(2))  # would reach 0.40 > 0.32: waits
    disp.run_until_idle()
    ingest_bytes(sqlite_store, cfg, chans, _notice(3, "Extreme"))  # may use the reserve
    disp.run_until_idle()
    by_id = {d.notice_id: d for d in rows(sqlite_store, deliveries)}
    states = [by_id[k].state for k in sorted(by_id)]
    assert states == ["sent", "retry_wait", "sent"]
    waiting = by_id[sorted(by_id)[1]]
    assert "monthly budget of 0.40 reached" in waiting.last_error
    assert waiting.next_attempt_at.day == 1 and waiting.error_kind == "over_limit"
    assert len(fake_x.posts) == 2 and waiting.severity_rank == Severity.MODERATE.rank
    close_all(chans)


def test_daily_cap_can_skip(fake_x: FakeX, sqlite_store: Store) -> None:
    cfg, chans, disp = _run(
        sqlite_store,
        x_config('plan = "legacy_free"\ndaily_cap = 2\nbudget_reserve = 0\nover_limit = "skip"'),
        fake_x,
    )
    for i in range(3):
        ingest_bytes(sqlite_store, cfg, chans, _notice(i))
        disp.run_until_idle()
    ds = sorted(rows(sqlite_store, deliveries), key=lambda d: d.notice_id)
    assert [d.state for d in ds] == ["sent", "sent", "cancelled"]
    assert len(fake_x.posts) == 2
    close_all(chans)


def test_legacy_free_plan_has_its_daily_cap() -> None:
    cfg = config(x_config('plan = "legacy_free"'), **X_ENV)
    assert channel_limits(cfg)["x"].daily_cap == 17


def test_channels_command_shows_usage_and_spend(
    fake_x: FakeX, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f'database_url = "sqlite:///{tmp_path / "c.db"}"'
    text = x_config("monthly_budget = 5", db)
    path = tmp_path / "clarion.toml"
    path.write_text(text)
    from clarion.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    cfg, chans, disp = _run(store, text, fake_x)
    disp.clock = lambda: datetime.now(UTC)  # usage is counted in the real current month
    ingest_bytes(store, cfg, chans, _notice(1))
    disp.run_until_idle()
    r = CliRunner().invoke(app, ["channels", "--config", str(path)])
    assert r.exit_code == 0, r.output
    assert "x (x): active; today 1, this month 1, spent 0.20/5.00; sent 1" in r.stdout
    close_all(chans)
