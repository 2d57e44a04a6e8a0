"""Which notices a reader asked for, as conditions on the store (the feeds, the public page
and the API share it; their query parameters build it).

`source`, `severity` (at least), `status`, and, through the `notice_terms` index, `category`,
`area` (a geocode value such as `MTZ014`, or `UGC=MTZ014`), `route`, `entity` (an id, or
`kind:id` such as `component:api`) and `lang` (`en` or `en-US`). Several values of one filter
mean any of them; different filters must all hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.orm import aliased

from clarion.model import Severity, Status
from clarion.store.schema import notice_terms, notices
from clarion.store.terms import place_words

MAX_PLACE_WORDS = 8  # a search of more words is cut: each is one more condition


@dataclass(frozen=True)
class NoticeFilter:
    source: tuple[str, ...] = ()
    publisher: tuple[str, ...] = ()  # the notice's sender, as CAP names it
    severity: Severity | None = None
    status: tuple[Status, ...] = ()
    category: tuple[str, ...] = ()
    area: tuple[str, ...] = ()
    route: tuple[str, ...] = ()
    entity: tuple[str, ...] = ()
    lang: tuple[str, ...] = ()
    place: tuple[str, ...] = ()  # words of a place, line or service's name: every one must match

    @classmethod
    def build(
        cls,
        *,
        source: Iterable[str] | None = None,
        publisher: Iterable[str] | None = None,
        severity: str | None = None,
        status: Iterable[str] | None = None,
        category: Iterable[str] | None = None,
        area: Iterable[str] | None = None,
        route: Iterable[str] | None = None,
        entity: Iterable[str] | None = None,
        lang: Iterable[str] | None = None,
        place: str | None = None,
    ) -> NoticeFilter:
        """From query parameters (each may repeat, or hold comma-separated values); a bad
        severity or status raises ValueError naming the choices."""

        def many(values: Iterable[str] | None, lower: bool = True) -> tuple[str, ...]:
            out: list[str] = []
            for v in values or ():
                out.extend(p.strip() for p in v.split(",") if p.strip())
            return tuple(sorted({p.lower() if lower else p for p in out}))

        sev = None
        if severity:
            try:
                sev = Severity(severity.strip().lower())
            except ValueError:
                choices = ", ".join(s.value for s in Severity)
                raise ValueError(f"severity must be one of {choices}") from None
        statuses = []
        for s in many(status):
            try:
                statuses.append(Status(s))
            except ValueError:
                choices = ", ".join(x.value for x in Status)
                raise ValueError(f"status must be one of {choices}") from None
        return cls(
            source=many(source, lower=False),
            publisher=tuple(sorted({p for p in publisher or () if p})),
            severity=sev,
            status=tuple(statuses),
            category=many(category),
            area=many(area),
            route=many(route),
            entity=many(entity),
            lang=many(lang),
            place=tuple(dict.fromkeys(place_words(place or "")))[:MAX_PLACE_WORDS],
        )

    @property
    def empty(self) -> bool:
        return self == NoticeFilter()

    def query_params(self) -> dict[str, list[str]]:
        """The filter as query parameters (each value on its own, for `urlencode(doseq=True)`)."""
        out: dict[str, list[str]] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "place":
                if v:
                    out["place"] = [" ".join(v)]
            elif isinstance(v, Severity):
                out[f.name] = [v.value]
            elif v:
                out[f.name] = [str(x.value if isinstance(x, Status) else x) for x in v]
        return out

    def key(self) -> str:
        """A canonical spelling, for cache keys and ETags."""
        return urlencode(self.query_params(), doseq=True)

    def where(self) -> list[ColumnElement[bool]]:
        """Conditions on `notices` (joined nowhere: the terms are EXISTS subqueries).

        A story that matched keeps matching: its follow-ups (an update, a cancel, an end) are
        in every filtered feed, page and answer the story was in, whatever they say themselves
        (a cancel's severity is often Minor, and a reader who filtered must learn of it)."""
        if self.empty:
            return []
        earlier = aliased(notices)
        follow_up = and_(
            notices.c.msg_type.in_(("update", "cancel", "end")),
            exists(
                select(earlier.c.id).where(
                    earlier.c.thread_id == notices.c.thread_id,
                    earlier.c.id < notices.c.id,
                    *self._conditions(earlier),
                )
            ),
        )
        return [or_(and_(*self._conditions(notices)), follow_up)]

    def _conditions(self, n: Any) -> list[ColumnElement[bool]]:
        """What a notice must say itself to match (on `n`, the notices table or an alias)."""
        cond: list[ColumnElement[bool]] = []
        if self.source:
            cond.append(n.c.source.in_(self.source))
        if self.publisher:
            cond.append(n.c.sender.in_(self.publisher))
        if self.severity is not None:
            allowed = [s.value for s in Severity if s.rank >= self.severity.rank]
            cond.append(n.c.severity.in_(allowed))
        if self.status:
            cond.append(n.c.status.in_([s.value for s in self.status]))
        for word in self.place:  # every word of the name, each in some area or entity
            cond.append(
                exists(
                    select(notice_terms.c.notice_id).where(
                        notice_terms.c.notice_id == n.c.id,
                        notice_terms.c.term == f"place:{word}",
                    )
                )
            )
        for prefix, values in (
            ("category", self.category),
            ("area", self.area),
            ("route", self.route),
            ("entity", self.entity),
            ("lang", self.lang),
        ):
            if values:
                wanted = [f"{prefix}:{v}" for v in values]
                cond.append(
                    exists(
                        select(notice_terms.c.notice_id).where(
                            and_(
                                notice_terms.c.notice_id == n.c.id,
                                notice_terms.c.term.in_(wanted),
                            )
                        )
                    )
                )
        return cond
