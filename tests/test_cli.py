"""The `clarion` command, as a newcomer uses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clarion.cli import app
from tests.conftest import FIXTURES

runner = CliRunner()


def test_help_explains_itself() -> None:
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in (
        "init",
        "check",
        "run",
        "worker",
        "web",
        "demo",
        "status",
        "post",
        "replay",
        "parse",
        "db",
    ):
        assert cmd in r.output


def test_parse_prints_json_lines_with_model_field_names() -> None:
    r = runner.invoke(
        app,
        [
            "parse",
            "--kind",
            "cap",
            str(FIXTURES / "cap/canada.cap"),
            str(FIXTURES / "cap/weather.cap"),
        ],
    )
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.output.splitlines()]
    assert [n["identifier"] for n in lines] == [
        "2.49.0.1.124.6bddbc91.2012",
        "NOAA-NWS-ALERTS-MT20100830100700TFXFlashFloodWatchTFX20100830180000MT",
    ]
    assert lines[0]["msg_type"] == "update" and lines[0]["infos"][1]["language"] == "fr-CA"
    assert "original" not in lines[0]


def test_parse_reports_bad_files_and_goes_on() -> None:
    r = runner.invoke(
        app, ["parse", str(FIXTURES / "cap/xee.cap"), str(FIXTURES / "cap/weather.cap")]
    )
    assert r.exit_code == 1
    assert "xee.cap: CAP document declares a DOCTYPE" in r.stderr
    assert r.stdout.count("\n") == 1  # the good file still parsed


def test_parse_feed_kind() -> None:
    r = runner.invoke(app, ["parse", "-k", "feed", str(FIXTURES / "feeds/wordpress-org-news.rss")])
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 10


def test_init_then_check_names_the_missing_secret(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MASTODON_TOKEN", raising=False)
    monkeypatch.delenv("PARTNER_WEBHOOK_SECRET", raising=False)
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert runner.invoke(app, ["init"]).exit_code == 1  # never overwrites silently
    r = runner.invoke(app, ["check"])
    assert r.exit_code == 2
    assert (
        "channels.mastodon_main.token: environment variable MASTODON_TOKEN is not set" in r.stderr
    )
    assert (
        "channels.partners.secret: environment variable PARTNER_WEBHOOK_SECRET is not set"
        in r.stderr
    )
    monkeypatch.setenv("MASTODON_TOKEN", "x")
    monkeypatch.setenv("PARTNER_WEBHOOK_SECRET", "whsec_c2hvcnQ=")
    r = runner.invoke(app, ["check"])
    assert r.exit_code == 2 and "channels.partners.secret: decodes to 5 bytes" in r.stderr
    monkeypatch.setenv("PARTNER_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    r = runner.invoke(app, ["check"])
    assert r.exit_code == 0, r.output
    assert "OK: clarion.toml: 2 source(s), 3 channel(s), 3 route(s)" in r.stdout


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[channels.p]\nkind = "preview"\nstatus = ["actual"]\n')
    r = runner.invoke(app, ["check", "--config", str(cfg)])
    assert r.exit_code == 2 and "channels.p.status: unknown key" in r.stderr


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLARION_DATABASE_URL", f"sqlite:///{tmp_path / 'c.db'}")
    return tmp_path


def test_replay_worker_status(workdir: Path) -> None:
    from clarion.demo import DATA

    files = [
        str(DATA / "01-nws-flash-flood-watch.cap"),
        str(DATA / "02-nws-flash-flood-watch-update.cap"),
    ]
    r = runner.invoke(app, ["replay", *files])
    assert r.exit_code == 0, r.output
    assert "0 deliveries queued" in r.stdout and "expired (not sent)" in r.stdout
    r = runner.invoke(
        app, ["replay", "--include-expired", str(DATA / "03-nws-flash-flood-watch-cancel.cap")]
    )
    assert "1 stored, 0 unchanged, 1 deliveries queued" in r.stdout
    r = runner.invoke(app, ["status"])
    assert "preview (preview): not started; pending 1" in r.stdout
    r = runner.invoke(app, ["worker", "--once"])
    assert "Processed 1 deliveries." in r.stdout
    r = runner.invoke(app, ["status"])
    # The cancel of something never posted on this channel posts nothing.
    assert "preview (preview): active; cancelled 1" in r.stdout


def test_post_a_manual_notice(workdir: Path) -> None:
    r = runner.invoke(
        app,
        [
            "post",
            "Water main break on Elm St",
            "--severity",
            "moderate",
            "--instruction",
            "Avoid the area",
            "--area",
            "Downtown",
        ],
    )
    assert r.exit_code == 0 and "1 deliveries queued" in r.stdout
    r = runner.invoke(app, ["post", "x", "--severity", "cataclysmic"])
    assert r.exit_code == 2


def test_db_upgrade(workdir: Path) -> None:
    r = runner.invoke(app, ["db", "upgrade"])
    assert r.exit_code == 0 and "is up to date" in r.stdout


def test_demo_without_serving(tmp_path: Path) -> None:
    r = runner.invoke(app, ["demo", "--db", str(tmp_path / "demo.db"), "--no-serve"])
    assert r.exit_code == 0, r.output
    assert r.stdout.count("[sent]") == 5
    assert "CANCELLED: Flash Flood Watch cancelled" in r.stdout


@pytest.mark.parametrize(
    ("kind", "path", "expected"),
    [
        ("nws", "nws-api/load-testing-ioc_alerts_active.json", None),
        ("gtfsrt", "gtfsrt/bart-alerts.pb", 1),
        ("gtfsrt", "gtfsrt/caltrain-service-alerts.json", 0),
        ("statuspage", "statuspage/githubstatus-summary-2022-11-25.json", 8),  # + Packages
    ],
)
def test_parse_covers_every_kind(
    kind: str, path: str, expected: int | None, tmp_path: Path
) -> None:
    src = FIXTURES / path
    if kind == "nws":  # the weather.gov proxy's date tokens, resolved as its proxy would
        from tests.nws_dates import resolve

        resolved = tmp_path / "nws.json"
        resolved.write_bytes(resolve(src.read_bytes()))
        src, expected = resolved, 8
    r = runner.invoke(app, ["parse", "--kind", kind, str(src)])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == expected
    assert all(line["kind"] == kind for line in lines)


@pytest.mark.parametrize("command", ["worker", "run"])
def test_a_long_running_process_freezes_what_it_loaded_before_it_starts(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """`worker` and `run` take what they keep for life out of the collector's view
    (`runtime.settle`) once config, store and channels are loaded, before the loops start."""
    import gc

    from clarion import runtime

    seen: list[int] = []

    def started(*_: object) -> None:
        seen.append(gc.get_freeze_count())
        raise SystemExit(0)  # the loops are not what this test is about

    monkeypatch.setattr(runtime, "start_background", started)
    gc.unfreeze()
    try:
        r = runner.invoke(app, [command])
    finally:
        gc.unfreeze()
    assert r.exit_code == 0, r.output
    assert seen and seen[0] > 10_000  # modules, config, channels: all frozen by then
