"""Rate limits hold across workers: the platform's write limit is one bucket in the database,
and a 429 from the platform pauses the channel for every worker (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from clarion.channels.base import ChannelError, ErrorKind, Outgoing, Profile, Receipt
from clarion.channels.preview import PreviewChannel
from clarion.delivery.dispatcher import Dispatcher
from clarion.manual import NoticeIn, new_alert
from clarion.pipeline import ingest
from clarion.store import Store
from clarion.store.schema import deliveries
from tests.helpers import NOW, config, rows

CFG = """
[channels.limited]
kind = "preview"
[[routes]]
channels = ["limited"]
"""


class Limited(PreviewChannel):
    """A platform allowing 3 posts a minute, that may answer 429 once."""

    profile = Profile(limit=None, counting=None, idempotency=True, rate_limit=(3, 60.0))

    def __init__(self) -> None:
        super().__init__("limited")
        self.sent: list[str] = []
        self.answer_429 = False

    def send(self, out: Outgoing) -> Receipt:
        if self.answer_429:
            self.answer_429 = False
            raise ChannelError(ErrorKind.RATE_LIMITED, "429 Too Many Requests", retry_after=30)
        self.sent.append(out.id)
        return super().send(out)


def _queue(store: Store, n: int) -> dict[str, Any]:
    cfg = config(CFG)
    channel = Limited()
    chans: dict[str, Any] = {"limited": channel}
    notices = [new_alert(cfg, NoticeIn(headline=f"Road {i} closed")) for i in range(n)]
    ingest(store, cfg, chans, notices, source="api", now=NOW)
    return chans


def test_the_write_limit_is_one_bucket_for_all_workers(store: Store) -> None:
    chans = _queue(store, 6)
    channel: Limited = chans["limited"]
    clock = [NOW]
    workers = [Dispatcher(store, chans, worker=f"w{i}", clock=lambda: clock[0]) for i in range(2)]
    for _ in range(6):  # the two workers take turns, one delivery each
        for w in workers:
            w.run_once(limit=1)
    assert len(channel.sent) == 3  # not 3 per worker
    waiting = rows(store, deliveries, deliveries.c.state == "retry_wait")
    assert len(waiting) == 3
    assert all("shared by every worker" in (d.last_error or "") for d in waiting)
    clock[0] = NOW + timedelta(seconds=21)  # one token back (3 a minute)
    for w in workers:
        w.run_until_idle()
    assert len(channel.sent) == 4


def test_a_429_pauses_the_channel_for_every_worker(store: Store) -> None:
    chans = _queue(store, 2)
    channel: Limited = chans["limited"]
    clock = [NOW]
    a = Dispatcher(store, chans, worker="a", clock=lambda: clock[0])
    b = Dispatcher(store, chans, worker="b", clock=lambda: clock[0])
    channel.answer_429 = True
    assert a.run_once(limit=1) == 1  # told to wait 30 s
    assert b.run_until_idle() == 0  # b does not even try: the channel is paused for all
    assert channel.sent == []
    clock[0] = NOW + timedelta(seconds=31)
    assert b.run_until_idle() == 2 and len(channel.sent) == 2


def test_the_config_sets_or_lifts_a_channels_limit(sqlite_store: Store) -> None:
    from clarion.channels import build_channels
    from clarion.runtime import make_dispatcher

    cfg = config(
        """
[channels.own_server]
kind = "mastodon"
instance = "https://social.example.gov"
token = { env = "OWN_TOKEN" }
rate_limit = "off"
[channels.slow]
kind = "preview"
rate_limit = "2/1m"
max_in_flight = 3
[channels.documented]
kind = "slack"
webhook_url = { env = "OWN_TOKEN" }
[channels.capped]
kind = "preview"
daily_cap = 10
max_in_flight = 5
""",
    )
    import os

    os.environ["OWN_TOKEN"] = "https://hooks.slack.example/x"
    try:
        d = make_dispatcher(sqlite_store, cfg, build_channels(cfg))
    finally:
        del os.environ["OWN_TOKEN"]
    assert d.limiters == {"slow": (2, 60.0), "documented": (1, 1.0)}
    # In flight at once: the config's, else the platform's; a capped channel one at a time.
    assert d.in_flight == {"own_server": 1, "slow": 3, "documented": 1, "capped": 1}
