"""Parser throughput on the real fixtures, each beside its bare library in the same run.

For every kind: documents per second through Clarion's parser (which validates, hardens and
maps to the model) and through the library alone (lxml / feedparser / protobuf / json), and
their ratio.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import feedparser
from google.transit import gtfs_realtime_pb2
from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clarion.sources import parsers  # noqa: E402
from tests.nws_dates import resolve  # noqa: E402

FIX = ROOT / "tests" / "fixtures"


def _rate(fn: Callable[[bytes], object], docs: list[bytes], seconds: float = 1.5) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for d in docs:
            fn(d)
        n += len(docs)
    return n / (time.perf_counter() - start)


def _lxml(d: bytes) -> object:
    return etree.fromstring(d, etree.XMLParser(resolve_entities=False, no_network=True))


def _pb(d: bytes) -> object:
    m = gtfs_realtime_pb2.FeedMessage()
    m.ParseFromString(d)
    return m


CASES: list[tuple[str, str, list[bytes], Callable[[bytes], object], str]] = [
    (
        "cap",
        "cap",
        [
            (FIX / "cap" / f).read_bytes()
            for f in ("weather.cap", "canada.cap", "nws_multiple_polygons.cap")
        ],
        _lxml,
        "lxml",
    ),
    (
        "feed",
        "feed",
        [
            (FIX / "feeds" / f).read_bytes()
            for f in ("wordpress-org-news.rss", "onefoottsunami.atom")
        ],
        feedparser.parse,
        "feedparser",
    ),
    (
        "nws",
        "nws",
        [resolve((FIX / "nws-api" / "testing_alerts_active.json").read_bytes())],
        json.loads,
        "json",
    ),
    ("gtfsrt", "gtfsrt", [(FIX / "gtfsrt" / "bart-alerts.pb").read_bytes()], _pb, "protobuf"),
    (
        "statuspage",
        "statuspage",
        [(FIX / "statuspage" / "githubstatus-summary-2022-11-25.json").read_bytes()],
        json.loads,
        "json",
    ),
]


def main() -> list[tuple[str, float, float]]:
    print(
        f"\nParsers on real fixtures (documents/s){'':12}{'clarion':>10}{'library':>12}{'ratio':>8}"
    )
    out = []
    for name, kind, docs, bare, lib in CASES:
        ours = _rate(lambda d, k=kind: parsers()[k](d, ""), docs)
        base = _rate(bare, docs)
        out.append((name, ours, base))
        print(f"  {name:<12} vs {lib:<24}{ours:10,.0f}{base:12,.0f}{ours / base:8.3f}")
    return out


if __name__ == "__main__":
    main()
