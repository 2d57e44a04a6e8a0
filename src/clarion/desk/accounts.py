"""Desk accounts: users with roles, Argon2id password hashes, sessions, login rate limiting.

Roles, each including the one before: `viewer` (sees everything), `editor` (writes notices,
retries and cancels deliveries, saves templates), `approver` (approves other people's
notices), `admin` (resumes channels; users are managed with `clarion users`).

Failed logins are counted from the audit log, per user name and per address, so the limit
holds across every `clarion web` replica sharing the database.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, select, update

from clarion.desk import audit
from clarion.store import Store
from clarion.store.schema import audit_log, desk_sessions, users

ROLES = ("viewer", "editor", "approver", "admin")
MIN_PASSWORD = 12
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
_hasher = PasswordHasher()  # Argon2id with the library's (RFC 9106 low-memory) parameters
_dummy: list[str] = []


def _dummy_hash() -> str:
    """Checked when the user name does not exist, so a wrong name takes as long as a wrong
    password. Made on first use: hashing costs time on purpose, and importing must not."""
    if not _dummy:
        _dummy.append(_hasher.hash("clarion: no such user"))
    return _dummy[0]


class AccountError(ValueError):
    """A user-management request that cannot be done; the message says why."""


class LoginRefused(Exception):
    def __init__(self, message: str, *, throttled: bool = False) -> None:
        super().__init__(message)
        self.throttled = throttled


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    created_at: datetime
    disabled_at: datetime | None
    last_login_at: datetime | None

    def can(self, role: str) -> bool:
        """Whether this user has `role` or a higher one."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    expires_at: datetime


def _user(r: object) -> User:
    return User(
        id=r.id,  # type: ignore[attr-defined]
        username=r.username,  # type: ignore[attr-defined]
        role=r.role,  # type: ignore[attr-defined]
        created_at=r.created_at,  # type: ignore[attr-defined]
        disabled_at=r.disabled_at,  # type: ignore[attr-defined]
        last_login_at=r.last_login_at,  # type: ignore[attr-defined]
    )


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AccountError("a password is at most 1,024 characters")


def add_user(
    store: Store, username: str, password: str, role: str, now: datetime, *, by: str
) -> User:
    if not _USERNAME.match(username):
        raise AccountError(
            "a user name is 2-63 lower-case letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    check_password(password)
    with store.write() as conn:
        if conn.execute(select(users.c.id).where(users.c.username == username)).first():
            raise AccountError(f"there is already a user {username!r}")
        conn.execute(
            insert(users).values(
                username=username,
                password_hash=_hasher.hash(password),
                role=role,
                created_at=now,
            )
        )
        audit.record(conn, now, by, "user_add", username, f"role {role}")
        return _user(conn.execute(select(users).where(users.c.username == username)).one())


def list_users(store: Store) -> list[User]:
    with store.read() as conn:
        return [_user(r) for r in conn.execute(select(users).order_by(users.c.username))]


def get_user(store: Store, username: str) -> User | None:
    with store.read() as conn:
        r = conn.execute(select(users).where(users.c.username == username)).first()
    return _user(r) if r is not None else None


def set_disabled(store: Store, username: str, disabled: bool, now: datetime, *, by: str) -> None:
    """Disable (every session ends at once) or enable a user."""
    with store.write() as conn:
        r = conn.execute(select(users).where(users.c.username == username)).first()
        if r is None:
            raise AccountError(f"no user {username!r}")
        conn.execute(
            update(users).where(users.c.id == r.id).values(disabled_at=now if disabled else None)
        )
        if disabled:
            conn.execute(delete(desk_sessions).where(desk_sessions.c.user_id == r.id))
        audit.record(conn, now, by, "user_disable" if disabled else "user_enable", username)


def set_password(store: Store, username: str, password: str, now: datetime, *, by: str) -> None:
    """A new password; every session of the user ends (someone may know the old one)."""
    check_password(password)
    with store.write() as conn:
        r = conn.execute(select(users).where(users.c.username == username)).first()
        if r is None:
            raise AccountError(f"no user {username!r}")
        conn.execute(
            update(users).where(users.c.id == r.id).values(password_hash=_hasher.hash(password))
        )
        conn.execute(delete(desk_sessions).where(desk_sessions.c.user_id == r.id))
        audit.record(conn, now, by, "user_passwd", username)


GLOBAL_FACTOR = 20  # failures for one name, from all clients together, before the ceiling


def _failures(store: Store, username: str, ip: str | None, since: datetime) -> tuple[int, int, int]:
    """Failed logins since `since`: (this name from this client, this client, this name)."""
    with store.read() as conn:
        base = (
            select(func.count())
            .select_from(audit_log)
            .where(audit_log.c.action == "login_failed", audit_log.c.at >= since)
        )
        by_name = int(conn.execute(base.where(audit_log.c.target == username)).scalar_one())
        if not ip:
            return by_name, by_name, by_name
        by_ip = int(conn.execute(base.where(audit_log.c.ip == ip)).scalar_one())
        by_pair = int(
            conn.execute(
                base.where(audit_log.c.target == username, audit_log.c.ip == ip)
            ).scalar_one()
        )
    return by_pair, by_ip, by_name


def _verify(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def authenticate(
    store: Store,
    username: str,
    password: str,
    now: datetime,
    *,
    ip: str | None,
    max_failures: int,
    window: float,
    checks: Callable[..., Any] | None = None,
) -> User:
    """The user, if the password is right; else LoginRefused (and the failure is logged).
    `checks(fn, *args)` runs the Argon2 work (the web's own low-priority threads,
    `clarion.desk.passwords`); by default it runs here.

    A client that failed `max_failures` times within `window` seconds, for this name or for
    any, waits until the window moves on. Throttling by name alone let anyone lock anyone out;
    so a name under attack from many clients at once (`GLOBAL_FACTOR` × `max_failures`
    failures) only stops the clients that have already failed: a client that has not failed
    is never refused the check of a correct password.
    """
    username = username.strip().lower()[:64]
    by_pair, by_ip, by_name = _failures(store, username, ip, now - timedelta(seconds=window))
    ceiling = by_name >= max_failures * GLOBAL_FACTOR and by_ip > 0
    if by_pair >= max_failures or by_ip >= max_failures or ceiling:
        audit.log(
            store, now, username or "-", "login_failed", target=username, detail="throttled", ip=ip
        )
        minutes = max(1, round(window / 60))
        raise LoginRefused(
            f"Too many failed logins. Wait {minutes} minutes, or ask an administrator.",
            throttled=True,
        )
    with store.read() as conn:
        r = conn.execute(select(users).where(users.c.username == username)).first()
    run = checks or (lambda fn, *args: fn(*args))
    ok = run(_verify, r.password_hash if r is not None else _dummy_hash(), password)
    if r is None or not ok or r.disabled_at is not None:
        why = "disabled" if (r is not None and ok) else "wrong user name or password"
        audit.log(store, now, username or "-", "login_failed", target=username, detail=why, ip=ip)
        raise LoginRefused("Wrong user name or password, or the account is disabled.")
    values: dict[str, object] = {"last_login_at": now}
    if _hasher.check_needs_rehash(r.password_hash):  # before the transaction, not inside it
        values["password_hash"] = run(_hasher.hash, password)
    with store.write() as conn:
        conn.execute(update(users).where(users.c.id == r.id).values(**values))
    return _user(r)


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(
    store: Store,
    user: User,
    now: datetime,
    lifetime: float,
    *,
    ip: str | None,
    user_agent: str | None,
) -> str:
    """A new session; returns the cookie's token (stored only as its hash)."""
    token = secrets.token_urlsafe(32)
    with store.write() as conn:
        conn.execute(delete(desk_sessions).where(desk_sessions.c.expires_at < now))
        conn.execute(
            insert(desk_sessions).values(
                id=_token_id(token),
                user_id=user.id,
                csrf=secrets.token_urlsafe(32),
                created_at=now,
                expires_at=now + timedelta(seconds=lifetime),
                ip=ip,
                user_agent=(user_agent or "")[:500],
            )
        )
        audit.record(conn, now, user.username, "login", user.username, None, ip)
    return token


def session(store: Store, token: str, now: datetime) -> Session | None:
    """The live session a cookie stands for: not expired, its user not disabled."""
    with store.read() as conn:
        r = conn.execute(
            select(desk_sessions.c.csrf, desk_sessions.c.expires_at, users)
            .select_from(desk_sessions.join(users, users.c.id == desk_sessions.c.user_id))
            .where(desk_sessions.c.id == _token_id(token))
        ).first()
    if r is None or r.expires_at <= now or r.disabled_at is not None:
        return None
    return Session(user=_user(r), csrf=r.csrf, expires_at=r.expires_at)


def end_session(store: Store, token: str, now: datetime, *, ip: str | None) -> None:
    with store.write() as conn:
        r = conn.execute(
            select(users.c.username)
            .select_from(desk_sessions.join(users, users.c.id == desk_sessions.c.user_id))
            .where(desk_sessions.c.id == _token_id(token))
        ).first()
        conn.execute(delete(desk_sessions).where(desk_sessions.c.id == _token_id(token)))
        if r is not None:
            audit.record(conn, now, r.username, "logout", r.username, None, ip)


def any_users(store: Store) -> bool:
    with store.read() as conn:
        return conn.execute(select(users.c.id).limit(1)).first() is not None


__all__ = [
    "ROLES",
    "AccountError",
    "LoginRefused",
    "Session",
    "User",
    "add_user",
    "any_users",
    "authenticate",
    "end_session",
    "get_user",
    "list_users",
    "session",
    "set_disabled",
    "set_password",
    "start_session",
]
