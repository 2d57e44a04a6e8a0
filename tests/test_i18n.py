"""The public page speaks the publisher's language: every string it shows goes through gettext,
each shipped catalogue translates every one of them (extracted from the templates and the code
as `pybabel extract` would), and a page configured in French is in French, dates included."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from clarion.config import ConfigError, parse_config
from clarion.store import Store
from clarion.web.app import create_app
from clarion.web.i18n import LANGUAGES, LOCALE
from tests.helpers import channels_for, config, demo_cap, ingest_bytes

WEB = Path(__file__).parent.parent / "src" / "clarion" / "web"


def _marked() -> set[str | tuple[str, ...]]:
    found = extract_from_dir(
        str(WEB),
        method_map=[("*.py", "python"), ("templates/*.html", "jinja2")],
        options_map={"templates/*.html": {"extensions": "jinja2.ext.i18n"}},
        keywords={"_": None, "N_": None, "ngettext": (1, 2), "gettext": None},
    )
    return {msg if isinstance(msg, str) else tuple(msg) for _f, _l, msg, _c, _x in found}


def test_the_page_marks_its_strings() -> None:
    marked = _marked()
    assert "In effect now" in marked and "Where to follow us" in marked
    assert ("%(num)d notice.", "%(num)d notices.") in marked
    assert len(marked) > 80


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "en"])
def test_every_string_is_translated(language: str) -> None:
    with (LOCALE / language / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f, locale=language)
    untranslated = []
    for msgid in _marked():
        message = catalog.get(msgid if isinstance(msgid, str) else msgid[0])
        strings = message.string if message is not None else ""
        strings = strings if isinstance(strings, tuple) else (strings,)
        if message is None or message.fuzzy or not all(strings):
            untranslated.append(msgid)
    assert untranslated == []


def test_a_page_in_french(sqlite_store: Store) -> None:
    cfg = config(
        """
[clarion]
page_language = "fr"
timezone = "America/Montreal"
drop_expired = false
[channels.preview]
kind = "preview"
[[routes]]
channels = ["preview"]
"""
    )
    watch = demo_cap(0).replace(b"2010-08-30T12:00:00-06:00", b"2099-07-01T18:00:00-06:00")
    ingest_bytes(sqlite_store, cfg, channels_for(cfg), watch)
    with TestClient(create_app(sqlite_store, cfg)) as client:
        page = client.get("/").text
        notice = client.get("/notices/1").text
    assert '<html lang="fr">' in page
    assert "En vigueur maintenant" in page and "Filtrer les avis" in page
    assert "En vigueur jusqu&#39;au mer. 1 juil. 2099" in page  # escaped as HTML
    assert "mer. 1 juil. 2099" in page  # Babel's French date, in the publisher's zone
    assert "1 avis." in page and "grave" in page  # plural and a translated severity
    assert "Version 1 :" in notice and "Zones :" in notice
    assert "In effect" not in page and "Where to follow" not in page


def test_only_languages_with_a_catalogue() -> None:
    with pytest.raises(ConfigError) as bad:
        parse_config('[clarion]\npage_language = "de"\n', environ={})
    assert bad.value.problems == ["clarion.page_language: 'de': the page speaks en, fr"]
