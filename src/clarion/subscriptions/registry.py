"""Subscribers in the store: created, confirmed, changed, paused, removed, counted.

The management link's secret and the e-mail confirmation's secret are 256 random bits each,
stored only as their SHA-256; the link works until the subscription is removed.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from clarion.store import Store
from clarion.store.schema import (
    subscription_points,
    subscription_reach,
    subscription_sends,
    subscription_terms,
    subscriptions,
)
from clarion.subscriptions.interests import Interests

KINDS = ("webpush", "email")
EVERYTHING = "*"  # the term of an interest in everything of the chosen sources
CONFIRMATION_EVERY = timedelta(days=1)  # one confirmation mail per address per day, at most
PAUSE_AFTER = 3  # consecutive refusals (a bouncing address) before a subscription is paused


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def address_key(kind: str, address: str) -> str:
    """Who an address is, whatever its spelling: an e-mail address canonical (one mailbox,
    one key) and folded; a push endpoint as it is."""
    if kind != "email":
        return digest(f"{kind}:{address.strip()}")
    from clarion.subscriptions.mail import canonical_email

    try:
        folded = canonical_email(address).lower()
    except ValueError:
        folded = address.strip().lower()
    return digest(f"{kind}:{folded}")


@dataclass(frozen=True)
class Created:
    id: int
    token: str  # the management link's secret: shown once, never stored
    confirm: str | None  # e-mail: the confirmation link's secret, if a mail is to be sent now


def _write_interests(
    conn: Connection, sub_id: int, interests: Interests, point_codes: Iterable[str] = ()
) -> None:
    """Its terms and point; `point_codes`: the codes of the publisher's areas the point lies
    in (`subscriptions.areas`), followed as if asked for by code."""
    conn.execute(delete(subscription_terms).where(subscription_terms.c.subscription_id == sub_id))
    conn.execute(delete(subscription_points).where(subscription_points.c.subscription_id == sub_id))
    interests_terms = interests.terms()
    asked = {tuple(t) for t in interests_terms}
    interests_terms += [
        [f"area:{c.lower()}"]
        for c in dict.fromkeys(point_codes)
        if (f"area:{c.lower()}",) not in asked
    ]
    rows = [
        {"subscription_id": sub_id, "interest": i, "term": t, "needed": len(terms)}
        for i, terms in enumerate(interests_terms)
        for t in terms
    ]
    if not rows and interests.point is None and interests.sources:
        rows = [{"subscription_id": sub_id, "interest": 0, "term": EVERYTHING, "needed": 1}]
    if rows:
        conn.execute(insert(subscription_terms), rows)
    if interests.point is not None:
        lat, lon = interests.point
        conn.execute(insert(subscription_points).values(subscription_id=sub_id, lat=lat, lon=lon))


def _columns(interests: Interests) -> dict[str, Any]:
    return {
        "interests": interests.model_dump(mode="json"),
        "min_severity": interests.min_severity.value if interests.min_severity else None,
        "sources": interests.sources,
        "languages": [x.lower() for x in interests.languages] if interests.languages else None,
    }


def create(
    store: Store,
    kind: str,
    address: str,
    interests: Interests,
    now: datetime,
    *,
    p256dh: str | None = None,
    auth: str | None = None,
    point_codes: Iterable[str] = (),
) -> Created:
    """A new subscription. Web Push is active at once (the browser asked the person); e-mail
    waits for its confirmation link, and a confirmation is mailed to an address at most once a
    day (`confirm` is None when none is to be sent now)."""
    assert kind in KINDS
    key = address_key(kind, address)
    token = secrets.token_urlsafe(32)
    confirm: str | None = None
    with store.write() as conn:
        if kind == "webpush":
            # The same browser subscribing again replaces what it had (its endpoint is its own).
            old = conn.execute(
                select(subscriptions.c.id).where(
                    subscriptions.c.address_key == key, subscriptions.c.kind == kind
                )
            ).scalars()
            remove_ids(conn, list(old))
        else:
            # Addresses never confirmed are forgotten after a day (everyone's, as they come).
            stale = conn.execute(
                select(subscriptions.c.id).where(
                    subscriptions.c.state == "pending",
                    subscriptions.c.created_at < now - CONFIRMATION_EVERY,
                )
            ).scalars()
            remove_ids(conn, list(stale))
            recent = conn.execute(
                select(func.count())
                .select_from(subscriptions)
                .where(
                    subscriptions.c.address_key == key,
                    subscriptions.c.confirm_sent_at > now - CONFIRMATION_EVERY,
                )
            ).scalar_one()
            if not recent:
                confirm = secrets.token_urlsafe(32)
        sub_id = conn.execute(
            insert(subscriptions).values(
                token_hash=digest(token),
                unsubscribe_key=secrets.token_urlsafe(24),
                kind=kind,
                state="active" if kind == "webpush" else "pending",
                address=address.strip(),
                address_key=key,
                p256dh=p256dh,
                auth=auth,
                confirm_hash=digest(confirm) if confirm else None,
                confirm_sent_at=now if confirm else None,
                failures=0,
                created_at=now,
                updated_at=now,
                confirmed_at=now if kind == "webpush" else None,
                **_columns(interests),
            )
        ).inserted_primary_key
        assert sub_id is not None
        _write_interests(conn, int(sub_id[0]), interests, point_codes)
    return Created(int(sub_id[0]), token, confirm)


def by_token(store: Store, token: str) -> Any | None:
    with store.read() as conn:
        return conn.execute(
            select(subscriptions).where(subscriptions.c.token_hash == digest(token))
        ).first()


def confirm(store: Store, secret: str, now: datetime) -> Any | None:
    """Follow an e-mail's confirmation link: the subscription is active from now on."""
    with store.write() as conn:
        row = conn.execute(
            select(subscriptions).where(subscriptions.c.confirm_hash == digest(secret))
        ).first()
        if row is None:
            return None
        conn.execute(
            update(subscriptions)
            .where(subscriptions.c.id == row.id)
            .values(state="active", confirm_hash=None, confirmed_at=now, updated_at=now)
        )
        return row


def change(
    store: Store, token: str, interests: Interests, now: datetime, point_codes: Iterable[str] = ()
) -> bool:
    with store.write() as conn:
        row = conn.execute(
            select(subscriptions.c.id).where(subscriptions.c.token_hash == digest(token))
        ).first()
        if row is None:
            return False
        conn.execute(
            update(subscriptions)
            .where(subscriptions.c.id == row.id)
            .values(updated_at=now, **_columns(interests))
        )
        _write_interests(conn, row.id, interests, point_codes)
    return True


def set_paused(store: Store, token: str, paused: bool, now: datetime) -> bool:
    """Pause or resume (a pending e-mail subscription stays pending)."""
    with store.write() as conn:
        res = conn.execute(
            update(subscriptions)
            .where(
                subscriptions.c.token_hash == digest(token),
                subscriptions.c.state.in_(["active", "paused"]),
            )
            .values(
                state="paused" if paused else "active",
                paused_reason="paused by the subscriber" if paused else None,
                failures=0,
                updated_at=now,
            )
        )
        return bool(res.rowcount)


def remove(store: Store, token: str) -> bool:
    """Unsubscribe: everything about the subscriber is deleted; the link stops working."""
    return _remove_where(store, subscriptions.c.token_hash == digest(token))


def remove_by_unsubscribe_key(store: Store, key: str) -> bool:
    """The one-click unsubscribe of a mail's `List-Unsubscribe` (RFC 8058)."""
    return _remove_where(store, subscriptions.c.unsubscribe_key == key)


def _remove_where(store: Store, condition: Any) -> bool:
    with store.write() as conn:
        ids = list(conn.execute(select(subscriptions.c.id).where(condition)).scalars())
        remove_ids(conn, ids)
    return bool(ids)


def remove_ids(conn: Connection, ids: Iterable[int]) -> int:
    ids = list(ids)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        for table in (subscription_terms, subscription_points, subscription_reach):
            conn.execute(delete(table).where(table.c.subscription_id.in_(chunk)))
        conn.execute(delete(subscriptions).where(subscriptions.c.id.in_(chunk)))
    return len(ids)


def record_sends(
    store: Store, delivery_id: str, results: list[tuple[int, str, str | None]], now: datetime
) -> None:
    """What one batch of a delivery did, per subscriber: `sent`; `gone` (the push service says
    the subscription no longer exists: it is removed); `refused` (this message was refused for
    this subscriber: after PAUSE_AFTER in a row, the subscription is paused)."""
    if not results:
        return
    with store.write() as conn:
        conn.execute(
            insert(subscription_sends),
            [
                {
                    "delivery_id": delivery_id,
                    "subscription_id": s,
                    "state": st,
                    "at": now,
                    "detail": (d or "")[:500] or None,
                }
                for s, st, d in results
            ],
        )
        sent = [s for s, st, _ in results if st == "sent"]
        for i in range(0, len(sent), 500):
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id.in_(sent[i : i + 500]))
                .values(last_sent_at=now, failures=0)
            )
        remove_ids(conn, [s for s, st, _ in results if st == "gone"])
        refused = [(s, d) for s, st, d in results if st == "refused"]
        for s, detail in refused:
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id == s)
                .values(failures=subscriptions.c.failures + 1, updated_at=now)
            )
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id == s, subscriptions.c.failures >= PAUSE_AFTER)
                .values(state="paused", paused_reason=f"refused {PAUSE_AFTER} times: {detail}")
            )


def counts(store: Store) -> dict[str, Any]:
    """For the desk: how many, by kind and state, and by what they follow (never who)."""
    with store.read() as conn:
        by_kind = {
            (r.kind, r.state): int(r.n)
            for r in conn.execute(
                select(
                    subscriptions.c.kind, subscriptions.c.state, func.count().label("n")
                ).group_by(subscriptions.c.kind, subscriptions.c.state)
            )
        }
        by_term = [
            (r.term, int(r.n))
            for r in conn.execute(
                select(subscription_terms.c.term, func.count().label("n"))
                .group_by(subscription_terms.c.term)
                .order_by(func.count().desc(), subscription_terms.c.term)
                .limit(50)
            )
        ]
        points = conn.execute(select(func.count()).select_from(subscription_points)).scalar_one()
    return {"by_kind": by_kind, "by_term": by_term, "points": int(points)}


def reach_of(store: Store, delivery_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per delivery: subscribers sent to, found gone, refused."""
    out: dict[str, dict[str, int]] = {}
    if not delivery_ids:
        return out
    with store.read() as conn:
        for r in conn.execute(
            select(
                subscription_sends.c.delivery_id,
                subscription_sends.c.state,
                func.count().label("n"),
            )
            .where(subscription_sends.c.delivery_id.in_(delivery_ids))
            .group_by(subscription_sends.c.delivery_id, subscription_sends.c.state)
        ):
            out.setdefault(r.delivery_id, {})[r.state] = int(r.n)
    return out


def _not_yet(
    story: int, channel: str, delivery_id: str, part: tuple[int, int] | None = None
) -> Any:
    done = select(subscription_sends.c.subscription_id).where(
        subscription_sends.c.delivery_id == delivery_id
    )
    q = (
        select(
            subscriptions.c.id,
            subscriptions.c.address,
            subscriptions.c.p256dh,
            subscriptions.c.auth,
            subscriptions.c.unsubscribe_key,
        )
        .join(subscription_reach, subscription_reach.c.subscription_id == subscriptions.c.id)
        .where(
            subscription_reach.c.thread_id == story,
            subscription_reach.c.channel == channel,
            subscriptions.c.state == "active",
            subscriptions.c.id.not_in(done),
        )
    )
    if part is not None and part[1] > 1:  # this part's share: by subscriber number
        q = q.where(subscriptions.c.id % part[1] == part[0])
    return q


def recipients(
    store: Store,
    story: int,
    channel: str,
    delivery_id: str,
    after: int,
    limit: int,
    part: tuple[int, int] | None = None,
) -> list[Any]:
    """The next `limit` subscribers (by id, after `after`) the story reaches on `channel` that
    this delivery has not reached yet (and that are still active)."""
    with store.read() as conn:
        q = (
            _not_yet(story, channel, delivery_id, part)
            .where(subscriptions.c.id > after)
            .order_by(subscriptions.c.id)
            .limit(limit)
        )
        return list(conn.execute(q).all())


def recipients_left(
    store: Store, story: int, channel: str, delivery_id: str, part: tuple[int, int] | None = None
) -> int:
    with store.read() as conn:
        q = select(func.count()).select_from(_not_yet(story, channel, delivery_id, part).subquery())
        return int(conn.execute(q).scalar_one())
