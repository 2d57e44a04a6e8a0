"""What a subscriber follows, as they asked for it, bounded; and the terms it matches on.

An *interest* is a set of terms that must all be among a notice's terms (`store.terms`): an area
code (`area:030013` for SAME, `area:mtz009` for UGC), the words of a place, line or service's
name (`place:cascade` + `place:county`), a route (`route:a`), a stop (`entity:stop:70011`), a
status component (`entity:component:abc`). A subscription matches when any of its interests
does, or when its point lies in one of the notice's polygons or circles; then its severity
floor, sources and languages are checked.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from clarion.model import Severity
from clarion.store.terms import MAX_TERM, place_words

MAX_ITEMS = 50  # areas, places, routes or components: a person's own, not a state's worth
MAX_SOURCES = 20
MAX_LANGUAGES = 5
MAX_PLACE_WORDS = 6

Item = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]


class Interests(BaseModel):
    """A subscriber's choices. Strict and bounded: a request that asks for thousands of areas,
    sends a polygon, or names a severity that does not exist is refused, not trimmed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    areas: list[Item] = Field(default_factory=list, max_length=MAX_ITEMS)  # codes: SAME, UGC, FIPS
    places: list[Item] = Field(default_factory=list, max_length=MAX_ITEMS)  # names
    routes: list[Item] = Field(default_factory=list, max_length=MAX_ITEMS)
    stops: list[Item] = Field(default_factory=list, max_length=MAX_ITEMS)  # transit stop ids
    components: list[Item] = Field(default_factory=list, max_length=MAX_ITEMS)
    point: tuple[float, float] | None = None  # (lat, lon)
    sources: list[Item] | None = Field(default=None, max_length=MAX_SOURCES)
    min_severity: Severity | None = None
    languages: (
        list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")]]
        | None
    ) = Field(default=None, max_length=MAX_LANGUAGES)

    @field_validator("point")
    @classmethod
    def _on_earth(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is None:
            return v
        lat, lon = v
        if not (
            math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180
        ):
            raise ValueError("a point is (latitude, longitude) in degrees, on Earth")
        return (round(lat, 5), round(lon, 5))  # about a metre: no more than delivery needs

    @field_validator("places")
    @classmethod
    def _named(cls, v: list[str]) -> list[str]:
        for name in v:
            words = place_words(name)
            if not words:
                raise ValueError(f"{name!r} has no word to match")
            if len(words) > MAX_PLACE_WORDS:
                raise ValueError(f"{name!r} has more than {MAX_PLACE_WORDS} words")
        return v

    def terms(self) -> list[list[str]]:
        """Each interest as the terms that must all be present."""
        out: list[list[str]] = []
        out += [[f"area:{a.lower()}"] for a in self.areas]
        out += [[f"place:{w}" for w in dict.fromkeys(place_words(p))] for p in self.places]
        out += [[f"route:{r.lower()}"] for r in self.routes]
        out += [[f"entity:stop:{x.lower()}"] for x in self.stops]
        out += [[f"entity:component:{c.lower()}"] for c in self.components]
        unique: dict[tuple[str, ...], list[str]] = {}
        for t in out:
            if all(len(x) <= MAX_TERM for x in t):
                unique.setdefault(tuple(sorted(t)), t)
        return list(unique.values())

    def follows_something(self) -> bool:
        """A subscription must name what it follows (an area, a place, a line, a service, a
        point) or the sources it wants everything of."""
        return bool(self.terms() or self.point is not None or self.sources)

    def describe(self) -> str:
        """In words, for the management page and the confirmation mail."""
        parts: list[str] = []
        parts += [f"area {a}" for a in self.areas]
        parts += list(self.places)
        parts += [f"line {r}" for r in self.routes]
        parts += [f"stop {x}" for x in self.stops]
        parts += [f"service {c}" for c in self.components]
        if self.point is not None:
            parts.append(f"the point {self.point[0]:.4f}, {self.point[1]:.4f}")
        if not parts and self.sources:
            parts.append("everything from " + ", ".join(self.sources))
        elif self.sources:
            parts.append("from " + ", ".join(self.sources))
        if self.min_severity is not None:
            parts.append(f"{self.min_severity.value} or worse")
        return "; ".join(parts)
