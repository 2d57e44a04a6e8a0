"""One conformance suite that every source kind passes, over loopback HTTP.

For each kind: a first poll ingests; a re-fetch of the same bytes changes nothing; a changed
item becomes a new version of its thread; the story ends in the way that kind ends (an explicit
Cancel, leaving a feed that lists only what is active — debounced —, or a terminal status);
a conditional GET answered 304 yields nothing to parse; and bad bytes are a recorded error that
changes no state and loses nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from google.protobuf import text_format
from google.transit import gtfs_realtime_pb2 as rt

from clarion.polling import poll_source
from clarion.sources import build_sources
from clarion.store import Store
from clarion.store.schema import sources as sources_table
from tests.conftest import fixture_bytes
from tests.fakes.http import FakeServer, Request, Response
from tests.helpers import NOW, channels_for, config, demo_cap, notices, rows, threads
from tests.nws_dates import resolve


class Origin:
    """Serves one document; `etag=True` answers conditional GETs as a real server would."""

    def __init__(self) -> None:
        self.body = b""
        self.ctype = "application/octet-stream"
        self.etag = False
        self.hits = 0
        self.server = FakeServer(self.handle)

    def handle(self, req: Request) -> Response:
        self.hits += 1
        tag = f'"{hash(self.body) & 0xFFFFFFFF:x}"'
        if self.etag and req.headers.get("if-none-match") == tag:
            return Response(304, raw=b"", headers={"ETag": tag})
        return Response(
            200, raw=self.body, content_type=self.ctype, headers={"ETag": tag} if self.etag else {}
        )


@dataclass
class Kind:
    name: str
    ctype: str
    extra: str  # config lines
    first: Callable[[], bytes]
    changed: Callable[[], bytes]
    ending: str  # "cancel" | "absent" | "terminal" | "none"
    ended: Callable[[], bytes] | None = None


def _json(data: object) -> bytes:
    return json.dumps(data).encode()


# --- feed ---------------------------------------------------------------------------------
FEED = {
    "version": "https://jsonfeed.org/version/1.1",
    "title": "Transit News",
    "items": [
        {
            "id": "a",
            "title": "Line 4 detour",
            "content_text": "Via Elm St.",
            "date_published": "2010-08-30T09:00:00Z",
        },
        {
            "id": "b",
            "title": "Fares",
            "content_text": "Unchanged.",
            "date_published": "2010-08-30T10:00:00Z",
        },
    ],
}


def _feed_changed() -> bytes:
    f = copy.deepcopy(FEED)
    f["items"][0]["content_text"] = "Via Oak St. instead."
    return _json(f)


# --- nws ----------------------------------------------------------------------------------
def _nws(n: int = 2) -> dict:
    data = json.loads(resolve(fixture_bytes("nws-api/load-testing-ioc_alerts_active.json")))
    data["features"] = data["features"][:n]
    return data


def _nws_changed() -> bytes:
    data = _nws()
    old = data["features"][0]["properties"]
    upd = copy.deepcopy(data["features"][0])
    p = upd["properties"]
    p["id"] = old["id"] + ".upd"
    p["messageType"] = "Update"
    p["references"] = [{"identifier": old["id"], "sender": old["sender"], "sent": old["sent"]}]
    p["sent"] = p["sent"].replace(p["sent"][:4], str(int(p["sent"][:4]) + 1), 1)
    p["headline"] = "Updated: " + (p.get("headline") or "")
    data["features"][0] = upd
    return _json(data)


# --- gtfsrt -------------------------------------------------------------------------------
def _gtfs(edit: str | None = None, drop_first: bool = False) -> bytes:
    feed = text_format.Parse(
        fixture_bytes("gtfsrt/spec_example_alerts.asciipb").decode(), rt.FeedMessage()
    )
    bart = rt.FeedMessage()
    bart.ParseFromString(fixture_bytes("gtfsrt/bart-alerts.pb"))
    feed.entity.append(bart.entity[0])
    if edit:
        feed.entity[0].alert.header_text.translation[0].text = edit
    if drop_first:
        del feed.entity[0]
    return feed.SerializeToString()


# --- statuspage ---------------------------------------------------------------------------
def _status(keep: int, resolved: bool = False) -> bytes:
    data = json.loads(fixture_bytes("statuspage/githubstatus-summary-2022-11-25.json"))
    inc = data["incidents"][0]
    inc["incident_updates"] = inc["incident_updates"][-keep:]  # the API lists newest first
    if resolved:
        inc["incident_updates"].insert(
            0,
            {
                **inc["incident_updates"][0],
                "id": "zzresolved",
                "status": "resolved",
                "body": "Resolved.",
                "created_at": "2022-11-25T17:00:00Z",
                "display_at": "2022-11-25T17:00:00Z",
            },
        )
    return _json(data)


KINDS = [
    Kind(
        "cap",
        "application/cap+xml",
        "",
        lambda: demo_cap(0),
        lambda: demo_cap(1),
        "cancel",
        lambda: demo_cap(2),
    ),
    Kind(
        "feed",
        "application/feed+json",
        "initial_items = 5",
        lambda: _json(FEED),
        _feed_changed,
        "none",
    ),
    Kind(
        "nws",
        "application/geo+json",
        'user_agent = "clarion-tests (ops@example.org)"',
        lambda: _json(_nws()),
        _nws_changed,
        "absent",
        lambda: _json(_nws(0)),
    ),
    Kind(
        "gtfsrt",
        "application/x-protobuf",
        "",
        _gtfs,
        lambda: _gtfs(edit="Elm St stop moved"),
        "absent",
        lambda: _gtfs(drop_first=True),
    ),
    Kind(
        "statuspage",
        "application/json",
        "",
        lambda: _status(3),
        lambda: _status(4),
        "terminal",
        lambda: _status(4, resolved=True),
    ),
]


@pytest.fixture
def origin() -> Iterator[Origin]:
    o = Origin()
    with o.server:
        yield o


def _setup(kind: Kind, origin: Origin):
    origin.ctype = kind.ctype
    path = "/api/v2/summary.json" if kind.name == "statuspage" else "/src"
    cfg = config(f"""
[clarion]
drop_expired = false
[sources.src]
kind = "{kind.name}"
url = "{origin.server.url}{path}"
{kind.extra}
[channels.preview]
kind = "preview"
[[routes]]
channels = ["preview"]
""")
    return cfg, channels_for(cfg), build_sources(cfg)["src"]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_conformance(kind: Kind, origin: Origin, store: Store) -> None:
    cfg, chans, source = _setup(kind, origin)
    with httpx.Client() as http:

        def poll():
            return poll_source(store, cfg, chans, source, http, now=NOW)

        # 1. parse and ingest
        origin.body = kind.first()
        first = poll()
        assert first is not None and first.stored, "the first poll ingests something"
        stored = len(rows(store, notices))
        # 2. dedupe on re-fetch: the same bytes again change nothing
        again = poll()
        assert again is not None and again.stored == [] and again.deliveries == 0
        assert len(rows(store, notices)) == stored
        # 3. a changed item is a new version of its thread
        origin.body = kind.changed()
        changed = poll()
        assert changed is not None and changed.stored
        versions = {t.thread_key: t.latest_version for t in rows(store, threads)}
        assert max(versions.values()) >= 2
        # 4. the end, as this kind ends
        if kind.ending != "none":
            assert kind.ended is not None
            origin.body = kind.ended()
            if kind.ending == "absent":
                results = [poll() for _ in range(source.end_after)]
                assert all(r is not None for r in results)
                # debounced: nothing ended before the last of the consecutive absences
                assert [r.ended for r in results[:-1]] == [0] * (source.end_after - 1)
                assert results[-1].ended >= 1
            else:
                assert poll() is not None
            closed = [t for t in rows(store, threads) if t.state in ("ended", "cancelled")]
            assert closed, f"{kind.name}: nothing ended"
        # 5. conditional GET: a 304 costs no parsing and changes nothing
        origin.etag = True
        assert poll() is not None
        before = len(rows(store, notices))
        hits = origin.hits
        r = poll()
        assert r is not None and r.stored == [] and origin.hits == hits + 1
        assert len(rows(store, notices)) == before
        # 6. bad input: a clear error, the state unchanged, nothing lost
        [state_before] = rows(store, sources_table)
        origin.etag = False
        origin.body = b"\x00\xffnot a feed at all<html>"
        assert poll() is None
        [state_after] = rows(store, sources_table)
        assert state_after.last_error and state_after.last_error.startswith("source src")
        assert (state_after.etag, state_after.cursor) == (state_before.etag, state_before.cursor)
        assert len(rows(store, notices)) == before
