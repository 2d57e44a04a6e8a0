"""Routing rules (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from clarion.config import parse_config
from clarion.model import MsgType, Status
from clarion.routing import is_stale, route
from clarion.sources.cap import parse_cap
from tests.conftest import fixture_bytes

CONFIG = """
[channels.all]
kind = "preview"
[channels.severe]
kind = "preview"
[channels.tests]
kind = "preview"
statuses = ["actual", "test", "exercise"]
[channels.montana]
kind = "preview"
[channels.geo]
kind = "preview"
[channels.off]
kind = "preview"
enabled = false

[[routes]]
channels = ["all", "tests", "off"]
[[routes]]
min_severity = "severe"
channels = ["severe"]
[[routes]]
geocodes = ["UGC:MTZ014"]
categories = ["met"]
channels = ["montana"]
[[routes]]
sources = ["geo"]
msg_types = ["cancel"]
channels = ["geo"]
"""


def _notice(**changes):
    n = parse_cap(fixture_bytes("cap/weather.cap"))[0]
    return n.model_copy(update=changes)


def test_routes() -> None:
    cfg = parse_config(CONFIG.replace('sources = ["geo"]\n', ""), environ={})
    cfg = cfg.model_copy(update={"sources": {}})
    n = _notice(source="nws")
    assert route(n, cfg) == ["all", "severe", "tests", "montana"]


def test_test_notices_reach_only_opted_in_channels() -> None:
    cfg = parse_config(CONFIG.replace('sources = ["geo"]\n', ""), environ={})
    for status in (Status.TEST, Status.EXERCISE):
        assert route(_notice(status=status), cfg) == ["tests"]
    assert route(_notice(status=Status.DRAFT), cfg) == []


def test_severity_threshold_and_cancel() -> None:
    cfg = parse_config(CONFIG.replace('sources = ["geo"]\n', ""), environ={})
    minor = parse_cap(fixture_bytes("cap/canada.cap"))[0]  # Minor, geocodes in Canada
    assert route(minor, cfg) == ["all", "tests"]
    cancel = parse_cap(fixture_bytes("cap/no_info_tag.cap"))[0]
    assert cancel.msg_type is MsgType.CANCEL
    # A cancel passes severity gates: it must reach wherever the alert went.
    assert "severe" in route(cancel, cfg)


def test_stale() -> None:
    n = _notice()
    assert is_stale(n, datetime(2026, 1, 1, tzinfo=UTC))
    assert not is_stale(n, datetime(2010, 8, 30, 12, 0, tzinfo=UTC))
    assert not is_stale(_notice(msg_type=MsgType.CANCEL), datetime(2026, 1, 1, tzinfo=UTC))
