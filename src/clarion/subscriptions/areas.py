"""The publisher's own area shapes (`[subscriptions] areas`, a GeoJSON FeatureCollection): which
area codes a subscriber's point lies in, so that alerts naming areas by code without drawing a
polygon (most NWS products name zones) reach the people in them.

Read once, bounded (size, features, points), each feature's geometry checked with shapely; a
file that cannot be used is a clear error at start, naming the feature.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_BYTES = 64 * 1024 * 1024
MAX_FEATURES = 100_000


class AreasError(ValueError):
    pass


@dataclass(frozen=True)
class Area:
    code: str
    name: str


class AreaIndex:
    def __init__(self, areas: list[Area], shapes: list[Any]) -> None:
        import shapely

        self.areas = areas
        self.shapes = shapes
        self._tree = shapely.STRtree(shapes)

    def __len__(self) -> int:
        return len(self.areas)

    def at(self, lat: float, lon: float) -> list[Area]:
        """The areas whose shape holds the point (lat, lon), in file order."""
        import shapely

        point = shapely.Point(lon, lat)
        hits = self._tree.query(point, predicate="intersects")
        return [self.areas[i] for i in sorted(int(h) for h in hits)]


def load(path: Path, code_property: str = "code", name_property: str = "name") -> AreaIndex:
    import shapely
    from shapely.geometry import shape

    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise AreasError(f"{path}: {size:,} bytes; at most {MAX_BYTES:,}")
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise AreasError(f"{path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise AreasError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise AreasError(f"{path}: not a GeoJSON FeatureCollection")
    features = doc.get("features")
    if not isinstance(features, list) or not features:
        raise AreasError(f"{path}: no features")
    if len(features) > MAX_FEATURES:
        raise AreasError(f"{path}: {len(features):,} features; at most {MAX_FEATURES:,}")
    areas: list[Area] = []
    shapes: list[Any] = []
    for i, f in enumerate(features):
        where = f"{path}: feature {i + 1}"
        props = (f or {}).get("properties") or {}
        code = props.get(code_property)
        if not isinstance(code, str | int) or not str(code).strip():
            raise AreasError(f"{where}: no {code_property!r} property (the area's code)")
        try:
            geom = shape(f.get("geometry") or {})
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise AreasError(f"{where} ({code}): not a geometry: {exc}") from None
        if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
            raise AreasError(f"{where} ({code}): a {geom.geom_type}, not a polygon")
        west, south, east, north = geom.bounds
        if not all(math.isfinite(v) for v in geom.bounds) or not (
            -180 <= west <= east <= 180 and -90 <= south <= north <= 90
        ):
            raise AreasError(f"{where} ({code}): coordinates are not longitude, latitude")
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        areas.append(Area(str(code).strip(), str(props.get(name_property) or code)))
        shapes.append(geom)
    return AreaIndex(areas, shapes)


MAP_WIDTH, MAP_HEIGHT, MAP_PAD = 640.0, 420.0, 10.0
MAP_MAX_AREAS = 5000  # more than this is not a map a person can click on


def area_map(index: AreaIndex, label: str) -> str | None:
    """An SVG of the publisher's areas (each with its name as a tooltip), in the page map's
    projection (equirectangular, scaled by the cosine of the middle latitude), carrying what a
    script needs to turn a click into a latitude and longitude. None when there are too many
    areas to draw."""
    import shapely
    from markupsafe import escape

    if len(index) > MAP_MAX_AREAS:
        return None
    west, south, east, north = (float(v) for v in shapely.total_bounds(index.shapes))
    kx = math.cos(math.radians((south + north) / 2))
    span_x = max((east - west) * kx, 1e-6)
    span_y = max(north - south, 1e-6)
    scale = min((MAP_WIDTH - 2 * MAP_PAD) / span_x, (MAP_HEIGHT - 2 * MAP_PAD) / span_y)
    off_x = (MAP_WIDTH - span_x * scale) / 2
    off_y = (MAP_HEIGHT - span_y * scale) / 2
    tolerance = 0.5 / scale  # half a pixel
    shapes = []
    for area, geom in zip(index.areas, index.shapes, strict=True):
        simple = shapely.simplify(geom, tolerance, preserve_topology=True)
        polys = getattr(simple, "geoms", [simple])
        for poly in polys:
            if poly.geom_type != "Polygon" or poly.is_empty:
                continue
            pts = " ".join(
                f"{off_x + (x - west) * kx * scale:.1f},{off_y + (north - y) * scale:.1f}"
                for x, y in poly.exterior.coords
            )
            shapes.append(f'<polygon points="{pts}"><title>{escape(area.name)}</title></polygon>')
    return (
        f'<svg class="areamap pick" viewBox="0 0 {MAP_WIDTH:g} {MAP_HEIGHT:g}" '
        f'width="{MAP_WIDTH:g}" height="{MAP_HEIGHT:g}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" data-west="{west!r}" data-north="{north!r}" '
        f'data-kx="{kx!r}" data-scale="{scale!r}" data-offx="{off_x!r}" data-offy="{off_y!r}">'
        f"<title>{escape(label)}</title>{''.join(shapes)}"
        f'<circle id="picked" r="5" cx="-10" cy="-10"/></svg>'
    )
