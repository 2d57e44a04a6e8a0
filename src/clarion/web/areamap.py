"""A small inline SVG of a notice's areas (its polygons and circles). Pure.

Drawn in an equirectangular projection scaled by the cosine of the middle latitude, so shapes
keep their proportions at any latitude; no tiles, no script, no third party. The SVG is an
image with a text alternative naming the areas (`role="img"` and a `<title>`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 240.0, 160.0, 8.0
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
            if len(ring) >= 3:
                rings.append(ring)
        for c in area.get("circles") or []:
            rings.append(_circle_ring(float(c["lat"]), float(c["lon"]), float(c["radius_km"])))
    return rings


def area_svg(areas: Sequence[dict[str, Any]], label: str) -> Markup | None:
    rings = rings_of(areas)
    if not rings:
        return None
    lats = [p[0] for r in rings for p in r]
    lons = [p[1] for r in rings for p in r]
    mid = (min(lats) + max(lats)) / 2
    kx = math.cos(math.radians(mid))
    span_x = max((max(lons) - min(lons)) * kx, 1e-6)
    span_y = max(max(lats) - min(lats), 1e-6)
    scale = min((WIDTH - 2 * PAD) / span_x, (HEIGHT - 2 * PAD) / span_y)
    off_x = (WIDTH - span_x * scale) / 2
    off_y = (HEIGHT - span_y * scale) / 2

    def xy(lat: float, lon: float) -> str:
        x = off_x + (lon - min(lons)) * kx * scale
        y = off_y + (max(lats) - lat) * scale
        return f"{x:.1f},{y:.1f}"

    shapes = "".join(
        f'<polygon points="{" ".join(xy(lat, lon) for lat, lon in ring)}"/>' for ring in rings
    )
    return Markup(
        f'<svg class="areamap" viewBox="0 0 {WIDTH:g} {HEIGHT:g}" width="{WIDTH:g}" '
        f'height="{HEIGHT:g}" role="img" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>{shapes}</svg>"
    )
