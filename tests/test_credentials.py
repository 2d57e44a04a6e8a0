"""Credentials entered in the desk: encrypted at rest with Fernet, rotated with MultiFernet,
used by every worker without a restart, and never shown or logged."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from clarion import credentials
from clarion.desk import accounts
from clarion.pipeline import ingest
from clarion.runtime import make_dispatcher
from clarion.store import Store
from clarion.store.schema import channel_credentials, deliveries
from clarion.store.schema import channels as channels_t
from clarion.web.app import create_app
from tests.fakes.mastodon import FakeMastodon
from tests.helpers import channels_for, config, desk_login, rows

T0 = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
NEW_TOKEN = "brand-new-token-4b1d"
PASSWORD = "correct horse battery"


def cfg_with(mp: pytest.MonkeyPatch, instance: str, keys: str | None) -> object:
    env = {"MASTO_TOKEN": "revoked-token"}
    if keys is not None:
        env["CLARION_SECRET_KEYS"] = keys
    for k, v in env.items():  # secrets are read from the process environment
        mp.setenv(k, v)
    return config(
        f"""
[channels.masto]
kind = "mastodon"
instance = "{instance}"
token = {{ env = "MASTO_TOKEN" }}
[[routes]]
channels = ["masto"]
""",
        **env,
    )


def test_encrypted_at_rest_and_rotated(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    cfg = cfg_with(monkeypatch, "https://m.example", old)
    keys = credentials.keyring(cfg)  # type: ignore[arg-type]
    credentials.put(sqlite_store, keys, "masto", "token", NEW_TOKEN, "root", T0)
    (row,) = rows(sqlite_store, channel_credentials)
    assert NEW_TOKEN not in row.ciphertext and row.updated_by == "root"
    assert credentials.load(sqlite_store, keys) == {"masto": {"token": NEW_TOKEN}}
    # Rotation: the new key first, the old one still there to read; rotate; drop the old.
    both = credentials.keyring(cfg_with(monkeypatch, "https://m.example", f"{new}, {old}"))  # type: ignore[arg-type]
    assert both is not None and credentials.rotate(sqlite_store, both) == 1
    only_new = credentials.keyring(cfg_with(monkeypatch, "https://m.example", new))  # type: ignore[arg-type]
    assert credentials.load(sqlite_store, only_new) == {"masto": {"token": NEW_TOKEN}}
    only_old = credentials.keyring(cfg_with(monkeypatch, "https://m.example", old))  # type: ignore[arg-type]
    with pytest.raises(credentials.CredentialError, match="does not open"):
        credentials.load(sqlite_store, only_old)
    with pytest.raises(credentials.CredentialError, match="not set"):
        credentials.load(sqlite_store, None)
    with pytest.raises(credentials.CredentialError, match="not Fernet keys"):
        credentials.keyring(cfg_with(monkeypatch, "https://m.example", "not-a-key"))  # type: ignore[arg-type]
    with pytest.raises(credentials.CredentialError, match="secret_keys"):
        credentials.put(sqlite_store, None, "masto", "token", "x", "root", T0)


def test_a_revoked_token_replaced_in_the_desk_is_used_at_once(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    key = Fernet.generate_key().decode()
    with FakeMastodon(token=NEW_TOKEN) as masto:  # the platform took the old token back
        cfg = cfg_with(monkeypatch, masto.url, key)
        chans = channels_for(cfg)  # type: ignore[arg-type]
        worker = make_dispatcher(sqlite_store, cfg, chans)  # type: ignore[arg-type]
        worker.credentials_check = 0
        from clarion.manual import NoticeIn, new_alert

        notice = new_alert(cfg, NoticeIn(headline="Water main break on 5th Street"))  # type: ignore[arg-type]
        ingest(sqlite_store, cfg, chans, [notice], source="api")  # type: ignore[arg-type]
        worker.run_until_idle()
        assert rows(sqlite_store, channels_t)[0].state == "needs_reauth"
        assert masto.statuses == {}

        accounts.add_user(sqlite_store, "root", PASSWORD, "admin", T0, by="test")
        accounts.add_user(sqlite_store, "eddie", PASSWORD, "editor", T0, by="test")
        client = TestClient(create_app(sqlite_store, cfg, chans))  # type: ignore[arg-type]
        desk_login(client, "eddie", PASSWORD)
        assert client.get("/desk/channels/masto/credentials").status_code == 403  # admins only
        desk_login(client, "root", PASSWORD)
        form = client.get("/desk/channels/masto/credentials")
        assert "environment variable MASTO_TOKEN" in form.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf
        r = client.post(
            "/desk/channels/masto/credentials",
            data={"csrf": csrf.group(1), "token": NEW_TOKEN},
            follow_redirects=False,
        )
        assert r.status_code == 303
        assert rows(sqlite_store, channels_t)[0].state == "active"
        assert NEW_TOKEN not in rows(sqlite_store, channel_credentials)[0].ciphertext

        assert worker.run_until_idle() == 1  # rebuilt with the new token, no restart
        assert len(masto.statuses) == 1
        assert rows(sqlite_store, deliveries)[0].state == "sent"
        # Never shown back, never logged.
        page = client.get("/desk/channels/masto/credentials").text
        assert "entered in the desk by root" in page and NEW_TOKEN not in page
        for url in ("/desk", "/desk/audit", "/api/v1/channels", "/desk/audit.csv"):
            assert NEW_TOKEN not in client.get(url).text
        assert "replaced token (stored encrypted)" in client.get("/desk/audit").text
        assert NEW_TOKEN not in caplog.text


def test_without_keys_the_desk_says_how_to_enable_it(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = cfg_with(monkeypatch, "https://m.example", None)
    accounts.add_user(sqlite_store, "root", PASSWORD, "admin", T0, by="test")
    client = TestClient(create_app(sqlite_store, cfg, channels_for(cfg)))  # type: ignore[arg-type]
    desk_login(client, "root", PASSWORD)
    page = client.get("/desk/channels/masto/credentials")
    assert "clarion secrets keygen" in page.text and "disabled" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    r = client.post(
        "/desk/channels/masto/credentials", data={"csrf": csrf.group(1), "token": "x" * 20}
    )
    assert "secret_keys" in r.text and rows(sqlite_store, channel_credentials) == []


def test_secrets_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clarion.cli import app

    runner = CliRunner()
    key = runner.invoke(app, ["secrets", "keygen"]).output.strip()
    Fernet(key.encode())  # a real key
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLARION_DATABASE_URL", f"sqlite:///{tmp_path / 'c.db'}")
    r = runner.invoke(app, ["secrets", "rotate"])
    assert r.exit_code == 2 and "not set" in r.output
    monkeypatch.setenv("CLARION_SECRET_KEYS", key)
    r = runner.invoke(app, ["secrets", "rotate"])
    assert r.exit_code == 0 and "Re-encrypted 0" in r.output
    monkeypatch.setenv("CLARION_SECRET_KEYS", "not-a-fernet-key-7f3a")
    r = runner.invoke(app, ["check"])
    assert r.exit_code == 2 and "not Fernet keys" in r.output
