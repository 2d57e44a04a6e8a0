"""An account's key pair and followers, in the database (shared by every web and worker)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from clarion.fediverse.signatures import new_key
from clarion.store import Store
from clarion.store.schema import fediverse_followers as followers
from clarion.store.schema import fediverse_keys, fediverse_remote_keys


def keypair(store: Store, username: str, now: datetime) -> tuple[str, str]:
    """(private PEM, public PEM), made the first time it is asked for, then always the same."""
    with store.read() as conn:
        r = conn.execute(
            select(fediverse_keys).where(fediverse_keys.c.username == username)
        ).first()
    if r is not None:
        return r.private_key, r.public_key
    private, public = new_key()
    try:
        with store.write() as conn:
            conn.execute(
                insert(fediverse_keys).values(
                    username=username, private_key=private, public_key=public, created_at=now
                )
            )
    except IntegrityError:  # another process made it first: use theirs
        pass
    with store.read() as conn:
        r = conn.execute(select(fediverse_keys).where(fediverse_keys.c.username == username)).one()
    return r.private_key, r.public_key


@dataclass(frozen=True)
class Follower:
    actor: str
    inbox: str
    shared_inbox: str | None
    state: str
    created_at: datetime
    failing_since: datetime | None
    last_error: str | None
    follow_id: str | None = None

    @property
    def delivery_inbox(self) -> str:
        return self.shared_inbox or self.inbox


def add_follower(
    store: Store,
    username: str,
    actor: str,
    inbox: str,
    shared_inbox: str | None,
    state: str,
    now: datetime,
    follow_id: str | None = None,
) -> None:
    with store.write() as conn:
        conn.execute(
            delete(followers).where(followers.c.username == username, followers.c.actor == actor)
        )
        conn.execute(
            insert(followers).values(
                username=username,
                actor=actor,
                inbox=inbox,
                shared_inbox=shared_inbox,
                state=state,
                follow_id=follow_id,
                created_at=now,
            )
        )


def remove_follower(store: Store, username: str, actor: str) -> bool:
    with store.write() as conn:
        res = conn.execute(
            delete(followers).where(followers.c.username == username, followers.c.actor == actor)
        )
        return bool(res.rowcount)


def remove_actor(store: Store, actor: str) -> int:
    """An account was deleted on its server: it follows nothing here any more."""
    with store.write() as conn:
        conn.execute(delete(fediverse_remote_keys).where(fediverse_remote_keys.c.actor == actor))
        return int(conn.execute(delete(followers).where(followers.c.actor == actor)).rowcount)


def set_state(store: Store, username: str, actor: str, state: str) -> bool:
    with store.write() as conn:
        res = conn.execute(
            update(followers)
            .where(followers.c.username == username, followers.c.actor == actor)
            .values(state=state)
        )
        return bool(res.rowcount)


def list_followers(store: Store, username: str, state: str | None = None) -> list[Follower]:
    q = select(followers).where(followers.c.username == username).order_by(followers.c.created_at)
    if state is not None:
        q = q.where(followers.c.state == state)
    with store.read() as conn:
        return [
            Follower(
                r.actor,
                r.inbox,
                r.shared_inbox,
                r.state,
                r.created_at,
                r.failing_since,
                r.last_error,
                r.follow_id,
            )
            for r in conn.execute(q)
        ]


def inboxes(store: Store, username: str) -> list[str]:
    """Where a post goes: each accepted follower's server once (its shared inbox if it has
    one), in a stable order."""
    return sorted({f.delivery_inbox for f in list_followers(store, username, "accepted")})


def inbox_failed(
    store: Store, username: str, inbox: str, error: str, now: datetime, drop_after: float
) -> list[str]:
    """Record a failed delivery to `inbox`; followers behind an inbox failing for longer than
    `drop_after` seconds are dropped. Returns the actors dropped."""
    on_inbox = (followers.c.inbox == inbox) | (followers.c.shared_inbox == inbox)
    with store.write() as conn:
        conn.execute(
            update(followers)
            .where(followers.c.username == username, on_inbox, followers.c.failing_since.is_(None))
            .values(failing_since=now)
        )
        conn.execute(
            update(followers)
            .where(followers.c.username == username, on_inbox)
            .values(last_error=error[:1000])
        )
        limit = now - timedelta(seconds=drop_after)
        gone = [
            r.actor
            for r in conn.execute(
                select(followers.c.actor).where(
                    followers.c.username == username,
                    on_inbox,
                    followers.c.state == "accepted",
                    followers.c.failing_since <= limit,
                )
            )
        ]
        if gone:
            conn.execute(
                update(followers)
                .where(followers.c.username == username, followers.c.actor.in_(gone))
                .values(state="dropped")
            )
    return gone


def inbox_ok(store: Store, username: str, inbox: str) -> None:
    on_inbox = (followers.c.inbox == inbox) | (followers.c.shared_inbox == inbox)
    with store.write() as conn:
        conn.execute(
            update(followers)
            .where(
                followers.c.username == username, on_inbox, followers.c.failing_since.is_not(None)
            )
            .values(failing_since=None, last_error=None)
        )


def cached_key(store: Store, key_id: str) -> tuple[str, str] | None:
    """(public PEM, owner actor) of a remote key fetched before, or None."""
    with store.read() as conn:
        r = conn.execute(
            select(fediverse_remote_keys.c.public_key, fediverse_remote_keys.c.actor).where(
                fediverse_remote_keys.c.key_id == key_id
            )
        ).first()
    return (r.public_key, r.actor) if r is not None else None


def key_created_at(store: Store, username: str) -> datetime:
    """When the account's key pair was made (its actor's `published`)."""
    with store.read() as conn:
        created: datetime = conn.execute(
            select(fediverse_keys.c.created_at).where(fediverse_keys.c.username == username)
        ).scalar_one()
    return created


def cache_key(store: Store, key_id: str, actor: str, public_key: str, now: datetime) -> None:
    with store.write() as conn:
        conn.execute(delete(fediverse_remote_keys).where(fediverse_remote_keys.c.key_id == key_id))
        conn.execute(
            insert(fediverse_remote_keys).values(
                key_id=key_id, actor=actor, public_key=public_key, fetched_at=now
            )
        )


def counts(store: Store, username: str) -> dict[str, int]:
    """Followers by state: accepted, pending, dropped."""
    out = {"accepted": 0, "pending": 0, "dropped": 0}
    for f in list_followers(store, username):
        out[f.state] = out.get(f.state, 0) + 1
    return out
