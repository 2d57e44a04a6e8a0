"""JSON logs: one object per line, with the delivery's ids as fields, and no secrets."""

from __future__ import annotations

import json
import logging

import pytest

from clarion.channels import build_channels
from clarion.channels.base import close_all
from clarion.delivery.dispatcher import Dispatcher
from clarion.logs import setup
from clarion.store import Store
from tests.fakes.chat import FakeTelegram
from tests.fakes.http import Response
from tests.helpers import NOW, deliveries, demo_cap, ingest_bytes, rows, telegram_config


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_lines_carry_delivery_fields_and_no_secret(
    restore_logging: None,
    sqlite_store: Store,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("T_TOKEN", FakeTelegram.TOKEN)
    for h in list(logging.getLogger().handlers):  # as in a real process: no handler before ours
        logging.getLogger().removeHandler(h)
    setup(fmt="json")
    with FakeTelegram() as fake:
        cfg = telegram_config(fake.url)
        chans = build_channels(cfg)
        fake.script.append(
            Response(
                500, {"ok": False, "error_code": 500, "description": f"oops {FakeTelegram.TOKEN}"}
            )
        )
        ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
        disp = Dispatcher(sqlite_store, chans, clock=lambda: NOW)
        disp.run_until_idle()
        [d] = rows(sqlite_store, deliveries)
        disp.clock = lambda: d.next_attempt_at
        disp.run_until_idle()
        close_all(chans)
    err = capsys.readouterr().err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    mine = [r for r in records if r.get("delivery_id") == d.id]
    assert [r["level"] for r in mine] == ["warning", "info"]  # the 500, then the post
    failed, posted = mine
    assert failed["channel"] == "tg" and failed["error_kind"] == "retryable"
    assert failed["notice_id"] == d.notice_id and "timestamp" in failed
    assert posted["post_url"].startswith("https://t.me/alerts/")
    assert FakeTelegram.TOKEN not in err


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text or json"):
        setup(fmt="xml")
