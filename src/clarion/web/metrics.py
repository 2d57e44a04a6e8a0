"""Prometheus metrics at `/metrics`, read from the database at scrape time.

Everything comes from the store, not from one process's memory, so any `clarion web` replica
reports the same figures for the whole deployment (every worker and poller included), and a
restart loses nothing. Latencies are histograms of what is recorded with each notice and each
delivery: from the time a notice says it was sent to when Clarion stored it (source →
ingest), and to when each channel confirmed it (source → delivered).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from clarion.config import Config
from clarion.status import channel_statuses, source_statuses
from clarion.store import Store, public

BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)


class StoreCollector:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config

    def _histogram(
        self, name: str, doc: str, label: str, rows: Sequence[Any]
    ) -> HistogramMetricFamily:
        h = HistogramMetricFamily(name, doc, labels=[label])
        for r in rows:
            cumulative = [
                (str(b), float(getattr(r, f"le_{i}") or 0)) for i, b in enumerate(BUCKETS)
            ]
            cumulative.append(("+Inf", float(r.n or 0)))
            h.add_metric([r.key], cumulative, sum_value=float(r.total or 0.0))
        return h

    def collect(self) -> Iterator[Metric]:
        store = self.store
        now = datetime.now(UTC)
        with store.read() as conn:
            ingested, delivered = public.latency_histograms(conn, BUCKETS)
            rejected = public.rejections(conn)
        yield self._histogram(
            "clarion_ingest_latency_seconds",
            "From the time a notice says it was sent to when Clarion stored it.",
            "source",
            ingested,
        )
        yield self._histogram(
            "clarion_delivery_latency_seconds",
            "From the time a notice says it was sent to when a channel confirmed the post.",
            "channel",
            delivered,
        )
        notices_total = CounterMetricFamily(
            "clarion_notices", "Notice versions stored, by source.", labels=["source"]
        )
        for r in ingested:
            notices_total.add_metric([r.key], float(r.n))
        yield notices_total
        outcome = GaugeMetricFamily(
            "clarion_deliveries",
            "Deliveries by channel and state (sent, failed, pending, retry_wait, sending, "
            "superseded, cancelled).",
            labels=["channel", "state"],
        )
        depth = GaugeMetricFamily(
            "clarion_queue_depth", "Deliveries not yet done, by channel.", labels=["channel"]
        )
        # The same read model as `clarion channels`, the desk and the API (clarion.status).
        chans = channel_statuses(store, self.config, now)
        for ch in chans:
            for state, n in sorted(ch.queue.items()):
                outcome.add_metric([ch.name, state], float(n))
            depth.add_metric([ch.name], float(ch.waiting))
        yield outcome
        yield depth
        up = GaugeMetricFamily(
            "clarion_channel_active",
            "1 when the channel is active, 0 when it needs re-authorisation or is disabled.",
            labels=["channel", "state"],
        )
        spend = GaugeMetricFamily(
            "clarion_channel_spend_this_month",
            "What the channel's posts cost this month.",
            labels=["channel"],
        )
        for c in chans:
            up.add_metric([c.name, c.state], 1.0 if c.state == "active" else 0.0)
            spend.add_metric([c.name], c.spend_this_month)
        yield up
        yield spend
        failing = GaugeMetricFamily(
            "clarion_source_consecutive_failures", "Polls failed in a row.", labels=["source"]
        )
        last_ok = GaugeMetricFamily(
            "clarion_source_last_success_timestamp_seconds",
            "When the source was last fetched without error.",
            labels=["source"],
        )
        for s in source_statuses(store, self.config, sample=20):
            failing.add_metric([s.name], float(s.consecutive_failures))
            if s.last_success_at is not None:
                last_ok.add_metric([s.name], s.last_success_at.timestamp())
        yield failing
        yield last_ok
        rejections = CounterMetricFamily(
            "clarion_source_items_rejected",
            "Items a source listed that could not be read (each poll that lists one counts), "
            "by reason: the rest of the poll went through.",
            labels=["source", "reason"],
        )
        for source, reason, n in rejected:
            rejections.add_metric([source, reason], float(n or 0))
        yield rejections


def render_metrics(store: Store, config: Config) -> bytes:
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, config))
    return bytes(generate_latest(registry))
