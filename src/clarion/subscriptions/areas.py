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
