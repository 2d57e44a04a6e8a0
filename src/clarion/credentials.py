"""Credentials entered in the desk, encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256,
from `cryptography`), under the keys in `[clarion] secret_keys`.

The keys are a secret reference like any other (`{ env = "CLARION_SECRET_KEYS" }`): one or more
Fernet keys separated by commas or spaces, the newest first. Encryption always uses the first;
decryption tries each (MultiFernet), so rotating is: `clarion secrets keygen`, put the new key
first, restart, `clarion secrets rotate` (re-encrypts every stored credential with it), then
drop the old key.

A stored credential replaces the config's reference for that one field of that one channel
(a revoked token replaced from the desk). Plaintexts are registered with the log scrubber the
moment they are decrypted, and are never shown back: the desk says only when and by whom each
was set.
"""

from __future__ import annotations

from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import delete, func, insert, select, update

from clarion.config import Config, SecretRef
from clarion.store import Store
from clarion.store.schema import channel_credentials


class CredentialError(ValueError):
    """Credentials cannot be stored or read; the message says why and what to do."""


def keygen() -> str:
    return Fernet.generate_key().decode()


def keyring(config: Config) -> MultiFernet | None:
    """The configured keys, or None when `secret_keys` is not set (storing is then refused)."""
    ref = config.clarion.secret_keys
    if ref is None:
        return None
    try:
        raw = ref.resolve()
    except ValueError as exc:
        raise CredentialError(f"clarion.secret_keys: {exc}") from None
    keys = [k for k in raw.replace(",", " ").split() if k]
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError):
        raise CredentialError(
            "clarion.secret_keys: not Fernet keys (32 url-safe base64 bytes each); make one "
            "with `clarion secrets keygen`"
        ) from None


def secret_fields(config: Config, channel: str) -> list[str]:
    """The fields of a channel that hold secrets (what the desk can replace)."""
    cfg = config.channels[channel]
    return [
        f
        for f in type(cfg).model_fields
        if isinstance(getattr(cfg, f), SecretRef)
        or (f == "password" and getattr(cfg, "kind", "") == "email")
    ]


def put(
    store: Store,
    keys: MultiFernet | None,
    channel: str,
    field: str,
    value: str,
    who: str,
    now: datetime,
) -> None:
    if keys is None:
        raise CredentialError(
            "Credentials can be entered here once `[clarion] secret_keys` is set (a Fernet key "
            "from `clarion secrets keygen`, kept in an environment variable or a file)."
        )
    token = keys.encrypt(value.encode()).decode()
    with store.write() as conn:
        conn.execute(
            delete(channel_credentials).where(
                channel_credentials.c.channel == channel, channel_credentials.c.field == field
            )
        )
        conn.execute(
            insert(channel_credentials).values(
                channel=channel, field=field, ciphertext=token, updated_by=who, updated_at=now
            )
        )


def load(store: Store, keys: MultiFernet | None) -> dict[str, dict[str, str]]:
    """Every stored credential, decrypted: {channel: {field: value}}."""
    from clarion.redact import register

    with store.read() as conn:
        rows = list(conn.execute(select(channel_credentials)))
    if not rows:
        return {}
    if keys is None:
        raise CredentialError(
            f"{len(rows)} credential(s) are stored encrypted, but `[clarion] secret_keys` is "
            "not set: set it to the keys they were stored with"
        )
    out: dict[str, dict[str, str]] = {}
    for r in rows:
        try:
            value = keys.decrypt(r.ciphertext.encode()).decode()
        except InvalidToken:
            raise CredentialError(
                f"channels.{r.channel}.{r.field}: the stored credential does not open with any "
                "of `[clarion] secret_keys` (a key was dropped before `clarion secrets rotate`?)"
            ) from None
        register(value)
        out.setdefault(r.channel, {})[r.field] = value
    return out


def info(store: Store) -> dict[tuple[str, str], tuple[str, datetime]]:
    """(channel, field) → (who set it, when): what the desk shows instead of the value."""
    with store.read() as conn:
        return {
            (r.channel, r.field): (r.updated_by, r.updated_at)
            for r in conn.execute(select(channel_credentials))
        }


def versions(store: Store) -> dict[str, datetime]:
    """When each channel's stored credentials last changed (workers rebuild on a change)."""
    with store.read() as conn:
        return {
            r.channel: r.at
            for r in conn.execute(
                select(
                    channel_credentials.c.channel,
                    func.max(channel_credentials.c.updated_at).label("at"),
                ).group_by(channel_credentials.c.channel)
            )
        }


def rotate(store: Store, keys: MultiFernet) -> int:
    """Re-encrypt every stored credential with the newest key; returns how many."""
    with store.write() as conn:
        rows = list(conn.execute(select(channel_credentials)))
        for r in rows:
            try:
                fresh = keys.rotate(r.ciphertext.encode()).decode()
            except InvalidToken:
                raise CredentialError(
                    f"channels.{r.channel}.{r.field}: does not open with any configured key"
                ) from None
            conn.execute(
                update(channel_credentials)
                .where(
                    channel_credentials.c.channel == r.channel,
                    channel_credentials.c.field == r.field,
                )
                .values(ciphertext=fresh)
            )
    return len(rows)
