"""Config: every problem named by its exact key; secrets by reference, never shown."""

from __future__ import annotations

import pytest

from clarion.config import (
    EXAMPLE_CONFIG,
    ConfigError,
    check_secrets,
    load_config,
    parse_config,
)
from clarion.model import Severity, Status

GOOD = """
[clarion]
port = 9000

[sources.nws]
kind = "cap"
url = "https://alerts.example.gov/cap/mt.atom"
interval = "2m"

[channels.mastodon_main]
kind = "mastodon"
instance = "https://mastodon.example"
token = { env = "MASTODON_TOKEN" }

[[routes]]
channels = ["mastodon_main"]
min_severity = "Severe"
"""


def test_good_config() -> None:
    cfg = parse_config(GOOD, environ={})
    assert cfg.clarion.port == 9000
    assert cfg.sources["nws"].interval == 120.0
    assert cfg.routes[0].min_severity is Severity.SEVERE
    assert cfg.channels["mastodon_main"].statuses == [Status.ACTUAL]  # test notices opt-in only


def test_missing_secret_is_named_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASTODON_TOKEN", raising=False)
    cfg = parse_config(GOOD, environ={})
    assert check_secrets(cfg) == [
        "channels.mastodon_main.token: environment variable MASTODON_TOKEN is not set"
    ]
    monkeypatch.setenv("MASTODON_TOKEN", "s3cret-value")
    assert check_secrets(cfg) == []
    assert "s3cret-value" not in repr(cfg) and "s3cret-value" not in str(cfg.channels)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            GOOD + "\n[channels.x]\nkind = 'preview'\ncolour = 'red'\n",
            "channels.x.colour: unknown key",
        ),
        (GOOD.replace("port = 9000", "port = 99999"), "clarion.port: Input should be less than"),
        (GOOD.replace("port = 9000", "prot = 9000"), "clarion.prot: unknown key"),
        (
            GOOD.replace('interval = "2m"', 'interval = "soon"'),
            "sources.nws.interval: 'soon' is not a duration",
        ),
        (
            GOOD.replace('kind = "cap"', 'kind = "carrier-pigeon"'),
            "sources.nws.kind: 'carrier-pigeon' is not a known kind",
        ),
        (
            GOOD.replace('url = "https://alerts.example.gov/cap/mt.atom"', 'url = "ftp://x"'),
            "sources.nws.url: 'ftp://x' is not an http(s) URL",
        ),
        (
            GOOD.replace('channels = ["mastodon_main"]', 'channels = ["nope"]'),
            "no channel named 'nope'",
        ),
        (
            GOOD.replace('min_severity = "Severe"', 'min_severity = "huge"'),
            "routes[0].min_severity",
        ),
        (
            GOOD.replace('token = { env = "MASTODON_TOKEN" }', 'token = "plain-text"'),
            "channels.mastodon_main.token",
        ),
        ("[clarion\nport=1", "not valid TOML"),
    ],
)
def test_problems_name_the_key(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, environ={})
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_environment_overrides() -> None:
    cfg = parse_config(
        GOOD,
        environ={
            "CLARION_PORT": "8181",
            "CLARION_DATABASE_URL": "postgresql://db/clarion",
            "CLARION_LANGUAGES": "fr, en",
        },
    )
    assert cfg.clarion.port == 8181
    assert cfg.clarion.database_url == "postgresql://db/clarion"
    assert cfg.clarion.languages == ["fr", "en"]
    with pytest.raises(ConfigError, match=r"clarion\.port"):
        parse_config(GOOD, environ={"CLARION_PORT": "eighty"})


def test_no_file_means_embedded_default(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, environ={})
    assert list(cfg.channels) == ["preview"]
    assert cfg.routes[0].channels == ["preview"]
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.toml"))


def test_example_config_is_valid() -> None:
    cfg = parse_config(EXAMPLE_CONFIG, environ={})
    assert {"preview", "mastodon_main", "partners"} <= set(cfg.channels)


def test_gtfsrt_header_values_may_be_secret_references(monkeypatch: pytest.MonkeyPatch) -> None:
    from clarion.config import check_secrets
    from clarion.redact import redact
    from clarion.sources import build_sources

    text = """
[sources.mta]
kind = "gtfsrt"
url = "https://api.example.org/gtfs-alerts"
headers = { "x-api-key" = { env = "MTA_KEY" }, "accept" = "application/x-protobuf" }
"""
    cfg = parse_config(text, environ={})
    monkeypatch.delenv("MTA_KEY", raising=False)
    assert check_secrets(cfg) == [
        "sources.mta.headers.x-api-key: environment variable MTA_KEY is not set"
    ]
    monkeypatch.setenv("MTA_KEY", "k3y-for-the-transit-feed")
    (source,) = build_sources(cfg).values()
    assert source.headers == {  # type: ignore[attr-defined]
        "x-api-key": "k3y-for-the-transit-feed",
        "accept": "application/x-protobuf",
    }
    assert "k3y-for-the-transit-feed" not in redact(
        "GET failed: x-api-key=k3y-for-the-transit-feed"
    )
