"""A small inline SVG of a notice's areas (its polygons and circles). Pure.

Drawn in an equirectangular projection scaled by the cosine of the middle latitude, so shapes
keep their proportions at any latitude; no tiles, no script, no third party. The SVG is an
image with a text alternative naming the areas (`role="img"` and a `<title>`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

from clarion.render.shapes import rings_of

WIDTH, HEIGHT, PAD = 240.0, 160.0, 8.0


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

    west, north = min(lons), max(lats)  # once, not once a point (that was O(N²))

    def points(ring: Sequence[Any]) -> str:
        out: list[str] = []
        for lat, lon in ring:
            p = f"{off_x + (lon - west) * kx * scale:.1f},{off_y + (north - lat) * scale:.1f}"
            if not out or out[-1] != p:  # what falls on the same spot is drawn once
                out.append(p)
        return " ".join(out)

    shapes = "".join(f'<polygon points="{points(ring)}"/>' for ring in rings)
    return Markup(
        f'<svg class="areamap" viewBox="0 0 {WIDTH:g} {HEIGHT:g}" width="{WIDTH:g}" '
        f'height="{HEIGHT:g}" role="img" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>{shapes}</svg>"
    )
