"""At ingest: which subscribers a notice reaches on a subscriber channel, fixed per story.

Terms are matched in SQL against the notice's own stored terms (`notice_terms`), so a
subscriber base of any size costs one grouped join; points are looked up by the bounding box of
each polygon or circle and then tested exactly with shapely. The severity floor, sources and
languages are checked on the candidates. A new or updated message adds whoever it matches to
the story's reach; a cancellation or an end goes to the reach as it stands, never further.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, select

from clarion.model import Notice, Severity
from clarion.store.schema import (
    notice_terms,
    subscription_points,
    subscription_reach,
    subscription_terms,
    subscriptions,
)
from clarion.subscriptions.registry import EVERYTHING

EARTH_KM = 6371.0088

_BY_TERMS = (
    select(subscription_terms.c.subscription_id)
    .join(
        notice_terms,
        and_(
            notice_terms.c.term == subscription_terms.c.term,
            notice_terms.c.notice_id == bindparam("notice_id"),
        ),
    )
    .join(subscriptions, subscriptions.c.id == subscription_terms.c.subscription_id)
    .where(subscriptions.c.kind == bindparam("kind"), subscriptions.c.state == "active")
    .group_by(
        subscription_terms.c.subscription_id,
        subscription_terms.c.interest,
        subscription_terms.c.needed,
    )
    .having(func.count() == subscription_terms.c.needed)
)
_EVERYTHING = (
    select(subscription_terms.c.subscription_id)
    .join(subscriptions, subscriptions.c.id == subscription_terms.c.subscription_id)
    .where(
        subscription_terms.c.term == EVERYTHING,
        subscriptions.c.kind == bindparam("kind"),
        subscriptions.c.state == "active",
    )
)
_IN_BOX = (
    select(
        subscription_points.c.subscription_id, subscription_points.c.lat, subscription_points.c.lon
    )
    .join(subscriptions, subscriptions.c.id == subscription_points.c.subscription_id)
    .where(
        subscription_points.c.lat.between(bindparam("south"), bindparam("north")),
        subscription_points.c.lon.between(bindparam("west"), bindparam("east")),
        subscriptions.c.kind == bindparam("kind"),
        subscriptions.c.state == "active",
    )
)
_FILTERS = select(
    subscriptions.c.id,
    subscriptions.c.min_severity,
    subscriptions.c.sources,
    subscriptions.c.languages,
).where(subscriptions.c.id.in_(bindparam("ids", expanding=True)))
_REACHED = select(subscription_reach.c.subscription_id).where(
    subscription_reach.c.thread_id == bindparam("thread_id"),
    subscription_reach.c.channel == bindparam("channel"),
)


def _in_shapes(conn: Connection, notice: Notice, kind: str) -> set[int]:
    import numpy as np
    import shapely

    found: set[int] = set()
    for info in notice.infos:
        for area in info.areas:
            for ring in area.polygons:
                if len(ring) < 4:
                    continue
                lats = [p[0] for p in ring]
                lons = [p[1] for p in ring]
                rows = conn.execute(
                    _IN_BOX,
                    {
                        "south": min(lats),
                        "north": max(lats),
                        "west": min(lons),
                        "east": max(lons),
                        "kind": kind,
                    },
                ).all()
                if not rows:
                    continue
                polygon = shapely.Polygon([(lon, lat) for lat, lon in ring])
                if not polygon.is_valid:
                    polygon = shapely.make_valid(polygon)
                shapely.prepare(polygon)
                inside = shapely.intersects_xy(
                    polygon, np.array([r.lon for r in rows]), np.array([r.lat for r in rows])
                )
                found.update(r.subscription_id for r, yes in zip(rows, inside, strict=True) if yes)
            for c in area.circles:
                dlat = math.degrees(c.radius_km / EARTH_KM)
                dlon = dlat / max(math.cos(math.radians(c.lat)), 1e-6)
                rows = conn.execute(
                    _IN_BOX,
                    {
                        "south": c.lat - dlat,
                        "north": c.lat + dlat,
                        "west": c.lon - dlon,
                        "east": c.lon + dlon,
                        "kind": kind,
                    },
                ).all()
                found.update(
                    r.subscription_id
                    for r in rows
                    if _km(c.lat, c.lon, r.lat, r.lon) <= c.radius_km
                )
    return found


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


def _languages(notice: Notice) -> set[str]:
    out: set[str] = set()
    for info in notice.infos:
        lang = info.language.lower()
        out |= {lang, lang.split("-")[0]}
    return out


def _wanted(row: Any, notice: Notice, languages: set[str]) -> bool:
    if row.min_severity and notice.severity.rank < Severity(row.min_severity).rank:
        return False
    if row.sources and notice.source not in row.sources:
        return False
    return not row.languages or any(
        x in languages or x.split("-")[0] in languages for x in row.languages
    )


def matching(conn: Connection, notice: Notice, notice_id: int, kind: str) -> set[int]:
    """The active subscribers of `kind` this stored notice is for."""
    candidates = set(conn.execute(_BY_TERMS, {"notice_id": notice_id, "kind": kind}).scalars())
    candidates |= set(conn.execute(_EVERYTHING, {"kind": kind}).scalars())
    candidates |= _in_shapes(conn, notice, kind)
    languages = _languages(notice)
    out: set[int] = set()
    ids = sorted(candidates)
    for i in range(0, len(ids), 2000):
        for row in conn.execute(_FILTERS, {"ids": ids[i : i + 2000]}):
            if _wanted(row, notice, languages):
                out.add(int(row.id))
    return out


def reach(
    conn: Connection,
    notice: Notice,
    notice_id: int,
    thread_id: int,
    channel: str,
    kind: str,
) -> int:
    """Add whoever this message reaches to its story's reach on `channel` (not for a
    cancellation or an end); the number of subscribers the story reaches there now."""
    reached = set(conn.execute(_REACHED, {"thread_id": thread_id, "channel": channel}).scalars())
    if not notice.msg_type.closes:
        new = sorted(matching(conn, notice, notice_id, kind) - reached)
        _insert_reach(conn, thread_id, channel, notice_id, new)
        reached.update(new)
    return len(reached)


def _insert_reach(
    conn: Connection, thread_id: int, channel: str, notice_id: int, ids: Iterable[int]
) -> None:
    rows = [
        {"thread_id": thread_id, "channel": channel, "subscription_id": s, "notice_id": notice_id}
        for s in ids
    ]
    for i in range(0, len(rows), 5000):
        conn.execute(insert(subscription_reach), rows[i : i + 5000])
