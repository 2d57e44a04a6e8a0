"""An alert's areas as (lat, lon) rings: its polygons, and its circles drawn as rings. Pure;
shared by the page's map (`web.areamap`) and the alert card (`render.card`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from clarion.model import ring_ok, simplify_ring

KM_PER_DEGREE = 111.32


def _circle_ring(
    lat: float, lon: float, radius_km: float, n: int = 32
) -> list[tuple[float, float]]:
    dlat = radius_km / KM_PER_DEGREE
    dlon = radius_km / (KM_PER_DEGREE * max(0.01, math.cos(math.radians(lat))))
    return [
        (lat + dlat * math.sin(2 * math.pi * i / n), lon + dlon * math.cos(2 * math.pi * i / n))
        for i in range(n + 1)
    ]


def rings_of(areas: Iterable[dict[str, Any]]) -> list[list[tuple[float, float]]]:
    """(lat, lon) rings from areas as stored (the notice's JSON)."""
    rings: list[list[tuple[float, float]]] = []
    for area in areas:
        for poly in area.get("polygons") or []:
            ring = [(float(p[0]), float(p[1])) for p in poly]
            if len(ring) >= 3 and ring_ok(ring):  # rows stored before the model checked
                rings.append(simplify_ring(ring))
        for c in area.get("circles") or []:
            lat, lon, radius = float(c["lat"]), float(c["lon"]), float(c["radius_km"])
            if ring_ok([(lat, lon)]) and math.isfinite(radius) and 0 < radius < 20_000:
                rings.append(_circle_ring(lat, lon, radius))
    return rings
