"""The dispatcher: claim due deliveries, send each through its channel, record the outcome.

One dispatcher runs in each `clarion worker` / `clarion run` process. While a send is under way
a heartbeat thread extends the lease, so a slow platform does not let another worker take the
row; if the process dies, the lease runs out and another worker (or this one, restarted) takes
it again with the same idempotency key.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial

from clarion import credentials
from clarion.channels.base import (
    Channel,
    ChannelError,
    ChannelLimits,
    ErrorKind,
    Outgoing,
    Receipt,
)
from clarion.delivery import outbox
from clarion.delivery.backoff import MAX_ATTEMPTS, backoff_delay
from clarion.logs import delivery_fields
from clarion.model import MsgType, Notice, Severity
from clarion.routing import is_over
from clarion.store import DATABASE_AWAY, Store, limits

log = logging.getLogger(__name__)
# A channel that handles a delivery faster than this sends one at a time (see `_at_once`).
SLOW_SEND = 0.005
# Of a channel's batches sent several at once, every PROBE_EVERY-th sends its first delivery
# alone first, to measure how long the platform takes to answer one send.
PROBE_EVERY = 8


SEVERE_RANK = Severity.SEVERE.rank


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _hand_store(channel: Channel, store: Store) -> None:
    """Channels that keep state in the database (the fediverse account's followers and keys)
    use the dispatcher's store."""
    use = getattr(channel, "use_store", None)
    if use is not None:
        use(store)


def _as_alert(c: outbox.Claimed) -> Notice:
    """The claimed notice worded as a new alert (an update where nothing was posted before)."""
    return c.notice().model_copy(update={"msg_type": MsgType.ALERT})


def _receipt(data: dict[str, object] | None) -> Receipt | None:
    if data is None or not data.get("post_id"):
        return None
    extra = data.get("extra")
    return Receipt(
        post_id=str(data["post_id"]),
        url=str(data["url"]) if data.get("url") else None,
        extra=dict(extra) if isinstance(extra, dict) else {},
    )


class ReceiptNotRecorded(Exception):
    """A post was made and the database would not take its receipt within `record_patience`."""


class Dispatcher:
    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        *,
        worker: str | None = None,
        lease_seconds: float = 60.0,
        heartbeat_seconds: float = 15.0,
        max_attempts: int = MAX_ATTEMPTS,
        caps: Mapping[str, ChannelLimits] | None = None,
        drop_expired: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rebuild: Callable[[str], Channel] | None = None,
        credentials_check: float = 5.0,
        rate_limits: Mapping[str, tuple[int, float] | None] | None = None,
        in_flight: Mapping[str, int] | None = None,
        max_in_flight: int = 32,
    ) -> None:
        self.store = store
        self.channels = channels
        # A credential replaced from the desk: the channel is rebuilt with it (on every worker,
        # within `credentials_check` seconds).
        self.rebuild = rebuild
        self.credentials_check = credentials_check
        self._cred_checked = time.monotonic()
        self._cred_seen = credentials.versions(store) if rebuild is not None else {}
        self.worker = worker or worker_id()
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.max_attempts = max_attempts
        self.caps = dict(caps or {})
        self.drop_expired = drop_expired
        self.clock = clock
        self._paused: dict[str, datetime] = {}  # channel → until, from a 429 this worker saw
        # The platforms' documented write limits, as buckets in the database: they hold across
        # every worker (`store.limits`).
        # `rate_limits` (from config) replaces a channel's documented limit; None: no limit.
        self.limiters: dict[str, tuple[int, float]] = {}
        for name, ch in channels.items():
            limit = (rate_limits or {}).get(name, ch.profile.rate_limit)
            if limit:
                self.limiters[name] = limit
        # How many deliveries each channel has in flight at once (its profile's, or the
        # config's), and all channels together: a pool of that many senders.
        # A channel with a cap or a budget sends one at a time: each send is checked against
        # what was spent before it.
        self.in_flight = {
            name: 1
            if name in self.caps
            else max(1, (in_flight or {}).get(name, ch.profile.max_in_flight))
            for name, ch in channels.items()
        }
        self._slots = {n: threading.BoundedSemaphore(k) for n, k in self.in_flight.items()}
        # Channels that send to subscribers: a claim takes as many of their deliveries (a
        # large fan-out's parts) as it can send at once, and leaves the rest to other workers.
        self._fan_out = {
            name: self.in_flight[name]
            for name, ch in channels.items()
            if getattr(ch, "subscription_kind", None)
        }
        # How long each channel's platform takes to answer one send made alone (a moving
        # average, seconds): one that answers within SLOW_SEND gains nothing from several sends
        # at once (the work is this process's, not the network's), so it sends one after the
        # other. Only sends made alone count: sends made at once slow each other down (here
        # the loopback receiver and this process share two cores), and a channel that timed
        # them stayed "slow", and so concurrent, for good (0.36 of the bare loop, measured).
        self._took: dict[str, float] = {}
        self._batches: dict[str, int] = {}
        self._alone = threading.local()  # set on a thread while it sends one delivery alone
        self._senders = ThreadPoolExecutor(max_in_flight, thread_name_prefix="send")
        for ch in channels.values():
            _hand_store(ch, store)
        outbox.ensure_channels(store, {n: c.kind for n, c in channels.items()}, clock())

    def refresh_credentials(self, force: bool = False) -> list[str]:
        """Rebuild the channels whose stored credentials changed; returns their names."""
        if self.rebuild is None:
            return []
        now = time.monotonic()
        if not force and now - self._cred_checked < self.credentials_check:
            return []
        self._cred_checked = now
        seen = credentials.versions(self.store)
        changed = [
            n for n, at in seen.items() if self._cred_seen.get(n) != at and n in self.channels
        ]
        for name in changed:
            try:
                fresh = self.rebuild(name)
            except Exception:
                log.exception("channel %s: its new credentials could not be used", name)
                continue
            _hand_store(fresh, self.store)
            old = self.channels[name]
            self.channels[name] = fresh  # type: ignore[index]
            old.close()
            log.info("channel %s: now sending with the credentials entered in the desk", name)
        self._cred_seen = seen
        return changed

    def run_once(self, limit: int | None = None, only: list[str] | None = None) -> int:
        """Claim and process one batch (of `only` these channels); returns how many deliveries
        were processed. Without a `limit`, a batch of ten or twice the channels' in flight
        (replays, the demo, tests); a lane passes what it can have in flight now."""
        self.refresh_credentials()
        wanted = [c for c in self.channels if only is None or c in only]
        if limit is None:
            limit = max([10, *(2 * self.in_flight[c] for c in wanted if self.in_flight[c] > 1)])
        claimed = outbox.claim(
            self.store,
            self.worker,
            self.clock(),
            self.lease_seconds,
            limit,
            only_channels=wanted,
            # A fan-out's parts: one per claim (per slot), the rest for other workers.
            at_most=self._fan_out,
        )
        if not claimed:
            return 0
        held = [c.id for c in claimed]
        held_lock = threading.Lock()
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(held, held_lock, stop), daemon=True)
        beat.start()

        def one(c: outbox.Claimed) -> None:
            try:
                self._process(c)
            except ReceiptNotRecorded as exc:
                # Made, and not recorded: queued again, it would be posted twice where the
                # platform takes no key. Left `sending`, its lease runs out (the heartbeat no
                # longer extends it) and it is taken over as after a crash: resent with its
                # key where the platform deduplicates, flagged for a person where it cannot.
                log.error("delivery %s: %s", c.id, exc, extra=delivery_fields(c))
            except Exception:  # never let one delivery stop the loop
                log.exception("delivery %s: unexpected error", c.id, extra=delivery_fields(c))
                now = self.clock()
                outbox.mark_retry(
                    self.store,
                    c,
                    self.worker,
                    now,
                    now + timedelta(seconds=backoff_delay(c.attempts)),
                    "internal error (see the worker's log)",
                    "retryable",
                )
            finally:
                with held_lock:
                    held.remove(c.id)

        def in_slot(c: outbox.Claimed) -> None:
            with self._slots[c.channel]:
                one(c)

        def alone(c: outbox.Claimed) -> None:
            self._alone.on = True
            try:
                one(c)
            finally:
                self._alone.on = False

        try:
            # A claim never holds two versions of one story for one channel (the older must be
            # done first), so what it holds may go at once, up to each channel's `in_flight`.
            at_once = [c for c in claimed if self._at_once(c.channel)]
            if not at_once:
                for c in claimed:
                    alone(c)
            else:
                rest = list(claimed)
                probe = self._probe_due(at_once[0].channel)
                if probe:  # one send alone, timed, then the rest at once
                    rest.remove(at_once[0])
                    alone(at_once[0])
                for f in [self._senders.submit(in_slot, c) for c in rest]:
                    f.result()
        finally:
            stop.set()
            beat.join()
        return len(claimed)

    def run_until_idle(self, max_rounds: int = 10_000) -> int:
        """Process until nothing is due now (for `clarion demo`, replays and tests)."""
        total = 0
        for _ in range(max_rounds):
            n = self.run_once()
            if n == 0:
                break
            total += n
        return total

    def run_forever(self, stop: threading.Event, idle_sleep: float = 1.0) -> None:
        """Deliver until `stop`, each channel in a lane of its own: a hung, slow or rate-limited
        platform delays only its own channel's deliveries, never another's (one in flight per
        channel keeps a story's versions in order there).

        Idle, the lanes wait for PostgreSQL's NOTIFY of new deliveries (so they start within
        milliseconds, not at their next poll), and poll every `idle_sleep` anyway: for retries
        coming due, and whenever the notification connection is down."""
        wake = threading.Condition()
        generation = [0]

        def lane(channel: str) -> None:
            while not stop.is_set():
                try:
                    n = self.run_once(self._in_flight_now(channel), only=[channel])
                except Exception:
                    log.exception("dispatcher: claim failed (database unavailable?); retrying")
                    n = 0
                if n == 0:
                    with wake:
                        seen = generation[0]

                        def woken(seen: int = seen) -> bool:
                            return generation[0] != seen or stop.is_set()

                        wake.wait_for(woken, idle_sleep)

        lanes = [
            threading.Thread(target=lane, args=(name,), daemon=True, name=f"lane-{name}")
            for name in self.channels
        ]
        for t in lanes:
            t.start()
        listener = self.store.listener(outbox.OUTBOX_CHANNEL)
        try:
            while not stop.is_set():
                listener.wait(idle_sleep, stop)
                with wake:  # new deliveries, or time to look for retries: every lane looks
                    generation[0] += 1
                    wake.notify_all()
        finally:
            with wake:
                wake.notify_all()
            for t in lanes:
                t.join()
            listener.close()

    def _in_flight_now(self, channel: str) -> int:
        """What a lane claims: only what it will have in flight at once (its `in_flight` when
        it sends several at once, else one). A claim leases what it takes; a worker killed
        with more leased than it was sending stranded the rest for the whole lease (19 for
        60 s, one of them started) while another worker idled."""
        return self.in_flight[channel] if self._at_once(channel) else 1

    def _timed(self, channel: str, took: float) -> None:
        before = self._took.get(channel)
        self._took[channel] = took if before is None else 0.8 * before + 0.2 * took

    def _at_once(self, channel: str) -> bool:
        """Send this channel's deliveries several at once: it allows it, and it is slow to
        answer one send (or not yet measured)."""
        took = self._took.get(channel)
        return self.in_flight[channel] > 1 and (took is None or took >= SLOW_SEND)

    def _probe_due(self, channel: str) -> bool:
        """Whether this batch, sent at once, first sends one delivery alone to time it: the
        second batch (the first goes at once, unmeasured), then every PROBE_EVERY-th."""
        n = self._batches[channel] = self._batches.get(channel, 0) + 1
        return n % PROBE_EVERY == 2 % PROBE_EVERY

    def _heartbeat(self, held: list[str], lock: threading.Lock, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_seconds):
            with lock:
                ids = list(held)
            try:
                outbox.heartbeat(self.store, self.worker, ids, self.clock(), self.lease_seconds)
            except Exception:
                log.exception("heartbeat failed")

    def _process(self, c: outbox.Claimed) -> None:
        channel = self.channels[c.channel]
        msg_type = MsgType(c.msg_type)  # the notice's, as stored (it is read only if needed)
        notice: Callable[[], Notice] = c.notice
        now = self.clock()
        if c.reclaimed and not channel.profile.idempotency:
            # No idempotency key on this platform: a resend could post twice. Flag, never repeat.
            outbox.mark_failed(
                self.store,
                c,
                self.worker,
                now,
                "the worker died mid-send and this platform cannot deduplicate; "
                "check whether it was posted, then retry by hand",
                "ambiguous",
            )
            return
        previous, root = (_receipt(r) for r in outbox.previous_receipts(self.store, c))
        if msg_type.closes and previous is None:
            outbox.mark_cancelled(
                self.store,
                c,
                self.worker,
                now,
                "nothing was posted on this channel for this thread, so there is nothing to cancel",
            )
            return
        if self.drop_expired and is_over(msg_type, c.over_at, now):
            outbox.mark_cancelled(
                self.store,
                c,
                self.worker,
                now,
                f"over at {c.over_at} before it could be sent",
            )
            return
        payload: dict[str, object] | str = c.payload_json  # decoded only if the channel reads it
        as_new = c.as_new
        if previous is None and as_new:
            # Nothing of this story was posted here before: the update is worded as a new
            # alert (with the story's current state), not as an update of nothing. (`True`:
            # the payload already is that wording; a dict: the wording, beside the reply's.)
            payload = as_new if isinstance(as_new, dict) else c.payload_json
            notice = partial(_as_alert, c)
        paused = self._paused.get(c.channel)
        if paused is not None and paused > now:
            # The platform said to wait a moment ago (a 429 earlier in this batch): not another
            # request before then, whether or not the channel has a configured bucket.
            outbox.mark_retry(
                self.store,
                c,
                self.worker,
                now,
                paused,
                "the platform asked to wait (429): paused for every worker",
                "rate_limited",
                count_attempt=False,
            )
            return
        over = self._over_limit(c, now)
        if over is not None:
            reason, until = over
            if self.caps[c.channel].over_limit == "skip":
                outbox.mark_cancelled(self.store, c, self.worker, now, f"skipped: {reason}")
            else:
                outbox.mark_retry(
                    self.store,
                    c,
                    self.worker,
                    now,
                    until,
                    f"waiting: {reason}",
                    "over_limit",
                    count_attempt=False,
                )
            return
        bucket = self.limiters.get(c.channel)
        if bucket is not None:
            wait = limits.take(self.store, c.channel, *bucket, now)
            if wait > 0:
                outbox.mark_retry(
                    self.store,
                    c,
                    self.worker,
                    now,
                    now + timedelta(seconds=wait),
                    "the platform's rate limit for this channel (shared by every worker)",
                    "rate_limited",
                    count_attempt=False,
                )
                return
        out = Outgoing(
            id=c.id,
            notice_or_loader=notice,
            payload_or_json=payload,
            previous=previous,
            root=root,
            attempt=c.attempts,
            progress=c.progress,
            checkpoint=lambda progress: outbox.checkpoint(self.store, c, self.worker, progress),
        )
        try:
            sending = time.monotonic()
            try:
                receipt = channel.send(out)
            finally:
                if getattr(self._alone, "on", False):
                    self._timed(c.channel, time.monotonic() - sending)
        except ChannelError as exc:
            self._failed(c, exc)
            return
        done = self._record_sent(c, receipt)
        if done:
            log.info(
                "delivery %s to %s: posted %s",
                c.id,
                c.channel,
                receipt.url or receipt.post_id,
                extra={**delivery_fields(c), "post_url": receipt.url},
            )
        else:
            log.warning(
                "delivery %s: sent as %s but the lease had passed to another worker",
                c.id,
                receipt.post_id,
            )

    # How long a made post's receipt is tried again while the database cannot be reached (a
    # restart, a failover), and the first pause between tries (doubling, at most 5 s).
    record_patience = 300.0
    record_first_pause = 0.25

    def _record_sent(self, c: outbox.Claimed, receipt: Receipt) -> bool:
        """Record a made post. The post is out: if recording it fails because the database
        cannot be reached, `mark_retry` would queue it again and post it twice where the
        platform takes no idempotency key. So the receipt is tried again, with pauses, while
        the lease is held (the heartbeat extends it once the database answers), for
        `record_patience` seconds; then `ReceiptNotRecorded`, and the row is left to its
        lease (see `run_once`)."""
        pause, deadline = self.record_first_pause, time.monotonic() + self.record_patience
        while True:
            try:
                return outbox.mark_sent(
                    self.store,
                    c,
                    self.worker,
                    self.clock(),
                    receipt.post_id,
                    receipt.url,
                    dict(receipt.extra),
                )
            except DATABASE_AWAY as exc:
                if time.monotonic() + pause > deadline:
                    raise ReceiptNotRecorded(
                        f"posted as {receipt.url or receipt.post_id}, but the database did not "
                        f"take its receipt for {self.record_patience:.0f} s ({exc}); left for "
                        "its lease to run out: taken over then, it is resent with its key "
                        "where the platform deduplicates, flagged for a person where not"
                    ) from exc
                log.warning(
                    "delivery %s: posted as %s, but the database did not take its receipt "
                    "(%s); trying again in %.2f s",
                    c.id,
                    receipt.post_id,
                    type(orig).__name__ if (orig := getattr(exc, "orig", None)) else exc,
                    pause,
                    extra=delivery_fields(c),
                )
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _over_limit(self, c: outbox.Claimed, now: datetime) -> tuple[str, datetime] | None:
        """Why this delivery may not go now (a cap or the budget binds), and until when."""
        caps = self.caps.get(c.channel)
        if caps is None:
            return None
        used = outbox.usage(self.store, c.channel, now)
        _, tomorrow, _, next_month = outbox.period_starts(now)
        # Severe and extreme notices may use the whole allowance; the rest leave the reserve.
        share = 1.0 if c.severity_rank >= SEVERE_RANK else 1.0 - caps.reserve
        if caps.daily_cap is not None and used.posts_today + 1 > caps.daily_cap * share:
            return (
                f"daily cap of {caps.daily_cap} posts reached ({used.posts_today} today)",
                tomorrow,
            )
        if caps.monthly_cap is not None and used.posts_this_month + 1 > caps.monthly_cap * share:
            return (
                f"monthly cap of {caps.monthly_cap} posts reached "
                f"({used.posts_this_month} this month)",
                next_month,
            )
        if (
            caps.monthly_budget is not None
            and used.spend_this_month + c.cost > caps.monthly_budget * share + 1e-9
        ):
            return (
                f"monthly budget of {caps.monthly_budget:.2f} reached "
                f"({used.spend_this_month:.2f} spent; this post costs {c.cost:.3f})",
                next_month,
            )
        return None

    def _failed(self, c: outbox.Claimed, exc: ChannelError) -> None:
        now = self.clock()
        log.warning(
            "delivery %s to %s: %s: %s",
            c.id,
            c.channel,
            exc.kind.value,
            exc.message,
            extra={**delivery_fields(c), "error_kind": exc.kind.value},
        )
        channel = self.channels[c.channel]
        if exc.maybe_sent and not channel.profile.idempotency:
            # It may be on the platform already, and a resend cannot be deduplicated there:
            # flag it for a person, never post it twice.
            outbox.mark_failed(
                self.store,
                c,
                self.worker,
                now,
                f"{exc.message} — it may have been posted, and this platform cannot "
                "deduplicate a resend: check the channel, then retry by hand if it is not there",
                "ambiguous",
            )
        elif exc.kind is ErrorKind.AUTH:
            outbox.hold_for_reauth(self.store, c, self.worker, now, exc.message)
        elif exc.kind is ErrorKind.PERMANENT:
            outbox.mark_failed(self.store, c, self.worker, now, exc.message, exc.kind.value)
        elif exc.kind is ErrorKind.RATE_LIMITED:  # being told to wait is not a failed attempt
            delay = backoff_delay(1, exc.retry_after)
            # Every worker waits, not only this one: they share the account's limit. And the
            # rest of this worker's batch for the channel waits too (it was claimed before).
            self._paused[c.channel] = now + timedelta(seconds=delay)
            limits.pause(self.store, c.channel, now + timedelta(seconds=delay), now)
            self._retry(c, now, delay, exc, count_attempt=False)
        elif c.attempts >= self.max_attempts:
            outbox.mark_failed(
                self.store,
                c,
                self.worker,
                now,
                f"gave up after {c.attempts} attempts: {exc.message}",
                exc.kind.value,
            )
        else:
            self._retry(c, now, backoff_delay(c.attempts, exc.retry_after), exc)

    def _retry(
        self,
        c: outbox.Claimed,
        now: datetime,
        delay: float,
        exc: ChannelError,
        count_attempt: bool = True,
    ) -> None:
        at = now + timedelta(seconds=delay)
        outbox.mark_retry(
            self.store, c, self.worker, now, at, exc.message, exc.kind.value, count_attempt
        )
