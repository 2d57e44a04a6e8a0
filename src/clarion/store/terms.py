"""The terms a notice can be filtered by (stored in `notice_terms`). Pure."""

from __future__ import annotations

import re
import unicodedata

from clarion.model import Notice

MAX_TERM = 255
_WORD = re.compile(r"\w+")


def place_words(text: str) -> list[str]:
    """The words a place, line or service is searched by: lower case, accents dropped
    ("Saint-Léonard" → "saint", "leonard"), one letter long or more but not single letters."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c)).lower()
    return [w for w in _WORD.findall(folded) if len(w) > 1]


def terms_for(notice: Notice) -> set[str]:
    terms: set[str] = set()
    for info in notice.infos:
        for c in info.categories:
            terms.add(f"category:{c.lower()}")
        lang = info.language.lower()
        terms.add(f"lang:{lang}")
        terms.add(f"lang:{lang.split('-')[0]}")
        for area in info.areas:
            terms.update(f"place:{w}" for w in place_words(area.description or ""))
            for g in area.geocodes:
                terms.add(f"area:{g.value.lower()}")
                terms.add(f"area:{g.name.lower()}={g.value.lower()}")
    for e in notice.entities:
        terms.update(f"place:{w}" for w in place_words(e.name or ""))
        terms.add(f"entity:{e.kind.lower()}:{e.id.lower()}")
        terms.add(f"entity:{e.id.lower()}")
        if e.kind == "route":
            terms.add(f"route:{e.id.lower()}")
            if e.name:
                terms.add(f"route:{e.name.lower()}")
    return {t for t in terms if len(t) <= MAX_TERM}
