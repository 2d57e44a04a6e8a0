"""The terms a notice can be filtered by (stored in `notice_terms`). Pure."""

from __future__ import annotations

from clarion.model import Notice

MAX_TERM = 255


def terms_for(notice: Notice) -> set[str]:
    terms: set[str] = set()
    for info in notice.infos:
        for c in info.categories:
            terms.add(f"category:{c.lower()}")
        lang = info.language.lower()
        terms.add(f"lang:{lang}")
        terms.add(f"lang:{lang.split('-')[0]}")
        for area in info.areas:
            for g in area.geocodes:
                terms.add(f"area:{g.value.lower()}")
                terms.add(f"area:{g.name.lower()}={g.value.lower()}")
    for e in notice.entities:
        terms.add(f"entity:{e.kind.lower()}:{e.id.lower()}")
        terms.add(f"entity:{e.id.lower()}")
        if e.kind == "route":
            terms.add(f"route:{e.id.lower()}")
            if e.name:
                terms.add(f"route:{e.name.lower()}")
    return {t for t in terms if len(t) <= MAX_TERM}
