"""A delivery's states, and the only moves between them.

```
  (queued) ─► pending ─────────► sending ─────► sent
               ▲  │ ▲              │ │ │
               │  │ └──────────────┘ │ └──► retry_wait ──► sending   (retryable, 429, a cap)
               │  │  held: re-auth   └────► failed ──► pending      (an operator's retry)
               │  ├──► superseded  (a newer version of the message came first)
               │  └──► cancelled   (over before it went; nothing to cancel; an operator)
               └── an operator's "retry now"
```

Every change of a delivery's state goes through `delivery.outbox` (the one writer), checked
here, and leaves a row in `delivery_events`.
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryState(StrEnum):
    PENDING = "pending"
    RETRY_WAIT = "retry_wait"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"


S = DeliveryState
ACTIVE = (S.PENDING, S.RETRY_WAIT, S.SENDING)  # not done yet
WAITING = (S.PENDING, S.RETRY_WAIT)  # not done, and nobody is sending it
TERMINAL = (S.SENT, S.FAILED, S.SUPERSEDED, S.CANCELLED)

MOVES: dict[DeliveryState | None, frozenset[DeliveryState]] = {
    None: frozenset({S.PENDING}),  # queued
    S.PENDING: frozenset({S.SENDING, S.SUPERSEDED, S.CANCELLED, S.PENDING}),  # retry now
    S.RETRY_WAIT: frozenset({S.SENDING, S.SUPERSEDED, S.CANCELLED, S.PENDING}),
    # A lease that ran out is claimed again: sending → sending, by another worker.
    # Held for re-authorization: back to pending, sent once an operator renews the credential.
    S.SENDING: frozenset({S.SENT, S.RETRY_WAIT, S.FAILED, S.CANCELLED, S.SENDING, S.PENDING}),
    S.FAILED: frozenset({S.PENDING, S.CANCELLED}),  # an operator's retry or cancel
    S.SENT: frozenset(),
    S.SUPERSEDED: frozenset(),
    S.CANCELLED: frozenset(),
}


class BadTransition(ValueError):
    pass


def check(before: str | None, after: str) -> DeliveryState:
    """`after` as a state, if a delivery in `before` may move there; BadTransition if not."""
    b = DeliveryState(before) if before is not None else None
    a = DeliveryState(after)
    if a not in MOVES[b]:
        raise BadTransition(f"a delivery cannot go from {b or 'nothing'} to {a}")
    return a
