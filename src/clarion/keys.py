"""API keys: created once (the secret is shown then and never again), listed, revoked.

A key reads `clk_<id>_<secret>`: the id finds the row, the secret is compared by its SHA-256 in
constant time. Scopes: `read` (every key) and `write` (create, update and cancel notices).
Tiers: `standard` (the `[api] key_per_hour` limit) and `public_service` (no limit: another
agency's system, a broadcaster, an app that relays the alerts further).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update

from clarion.store import Store
from clarion.store.schema import api_keys

PREFIX = "clk_"
TIERS = ("standard", "public_service")


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: frozenset[str]
    tier: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def can_write(self) -> bool:
        return "write" in self.scopes

    @property
    def trusted(self) -> bool:
        """Trusted automation: what it writes goes out without the desk's approval (a CAD
        system, a sensor). Other write keys follow the desk's approval policy."""
        return "trusted" in self.scopes


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    store: Store,
    name: str,
    now: datetime,
    *,
    write: bool = False,
    tier: str = "standard",
    trusted: bool = False,
) -> tuple[ApiKey, str]:
    """Store a new key; returns it and the full token, which is not kept anywhere."""
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {', '.join(TIERS)}")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    if trusted and not write:
        raise ValueError("only a write key can be trusted automation")
    scopes = "read,write,trusted" if trusted else "read,write" if write else "read"
    with store.write() as conn:
        conn.execute(
            insert(api_keys).values(
                id=key_id,
                name=name,
                secret_hash=_hash(secret),
                scopes=scopes,
                tier=tier,
                created_at=now,
            )
        )
    key = ApiKey(key_id, name, frozenset(scopes.split(",")), tier, now, None, None)
    return key, f"{PREFIX}{key_id}_{secret}"


def _row(r: object) -> ApiKey:
    return ApiKey(
        id=r.id,  # type: ignore[attr-defined]
        name=r.name,  # type: ignore[attr-defined]
        scopes=frozenset(r.scopes.split(",")),  # type: ignore[attr-defined]
        tier=r.tier,  # type: ignore[attr-defined]
        created_at=r.created_at,  # type: ignore[attr-defined]
        revoked_at=r.revoked_at,  # type: ignore[attr-defined]
        last_used_at=r.last_used_at,  # type: ignore[attr-defined]
    )


def list_keys(store: Store) -> list[ApiKey]:
    with store.read() as conn:
        return [_row(r) for r in conn.execute(select(api_keys).order_by(api_keys.c.created_at))]


def revoke_key(store: Store, key_id: str, now: datetime) -> bool:
    with store.write() as conn:
        res = conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return res.rowcount == 1


def verify(store: Store, token: str) -> ApiKey | None:
    """The key a token stands for, if it exists and is not revoked."""
    if not token.startswith(PREFIX) or token.count("_") < 2:
        return None
    key_id, _, secret = token.removeprefix(PREFIX).partition("_")
    with store.read() as conn:
        r = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    if r is None or r.revoked_at is not None:
        return None
    if not hmac.compare_digest(r.secret_hash, _hash(secret)):
        return None
    return _row(r)


def touch(store: Store, key_id: str, now: datetime) -> None:
    with store.write() as conn:
        conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=now))
