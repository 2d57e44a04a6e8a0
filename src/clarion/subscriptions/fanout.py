"""Sending one delivery to every subscriber its story reaches on a channel, a page at a time,
recording each one reached as it goes: a retry of the delivery (after a crash, a failure, a
push service's 429) goes only to the rest, so nobody gets one version twice (but for a page
being sent at the moment the process dies: its subscribers may get it again, once)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clarion.channels.base import ChannelError, ErrorKind, Outgoing, Receipt
from clarion.subscriptions import registry

PAGE = 1000
# Recorded: never tried again for this delivery. `unknown` (e-mail; Web Push sends again, its
# Topic replaces a copy): the request went out and its answer
# was lost (the connection broke while reading it): it may have arrived, and sending it again
# could show it twice, so it is not retried (at most once, as the outbox does for platforms
# without an idempotency key).
FINAL = ("sent", "gone", "refused", "unknown")


@dataclass(frozen=True)
class Outcome:
    state: str  # sent | gone | refused | unknown (final) | failed | later (tried on retry)
    detail: str | None = None
    retry_after: float | None = None


def fan_out(
    store: Any,
    out: Outgoing,
    channel: str,
    send_page: Callable[[list[Any]], list[Outcome]],
    page: int = PAGE,
) -> Receipt:
    if store is None:
        raise RuntimeError(f"channel {channel}: subscribers need the database handed to it")
    story = int(out.payload.get("story") or 0)
    part = out.payload.get("part")  # [k, n]: this row sends to the subscribers numbered k mod n
    share = (int(part[0]), int(part[1])) if part else None
    totals: Counter[str] = Counter()
    retry: float | None = None
    after = 0
    first_problem: str | None = None
    while batch := registry.recipients(store, story, channel, out.id, after, page, share):
        after = batch[-1].id
        outcomes = send_page(batch)
        assert len(outcomes) == len(batch)
        done = []
        for sub, o in zip(batch, outcomes, strict=True):
            totals[o.state] += 1
            if o.state in FINAL:
                done.append((sub.id, o.state, o.detail))
            elif first_problem is None:
                first_problem = o.detail
            if o.retry_after is not None:
                retry = max(retry or 0.0, o.retry_after)
        registry.record_sends(store, out.id, done, datetime.now(UTC))
    waiting = totals["failed"] + totals["later"]
    if waiting:
        raise ChannelError(
            ErrorKind.RETRYABLE,
            f"{waiting} subscriber(s) not reached yet, {totals['sent']} reached this time "
            f"(first problem: {first_problem})",
            retry_after=retry,
        )
    # The story's version, not the delivery (one of several parts): what a later version's
    # mail refers to (`In-Reply-To`), whichever part carried it to that subscriber.
    post_id = f"s{story}.v{out.notice.version}"
    return Receipt(post_id=post_id, extra={k: v for k, v in sorted(totals.items()) if v})
