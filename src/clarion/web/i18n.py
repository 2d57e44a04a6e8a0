"""The public page's language: every string a reader sees goes through gettext.

Catalogues are `locale/<lang>/LC_MESSAGES/messages.po` (English is the source language and
needs none); they are read with Babel and compiled in memory when the app starts, so there is
no build step. `clarion.web.i18n.LANGUAGES` is what `[clarion] page_language` may name. Dates
are formatted by Babel in the language and the publisher's time zone. A test extracts every
marked string from the templates and the code and checks each catalogue translates it.
"""

from __future__ import annotations

import functools
import gettext
import io
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

LOCALE = Path(__file__).parent / "locale"
LANGUAGES = ("en", *sorted(p.name for p in LOCALE.iterdir() if p.is_dir()))


def N_(message: str) -> str:
    """Marks a string for translation where it is defined; it is translated where shown."""
    return message


# Words the page shows from the data (a severity, a state, a message type…), translated.
LABELS = {
    v: v
    for v in (
        N_("extreme"),
        N_("severe"),
        N_("moderate"),
        N_("minor"),
        N_("unknown"),
        N_("actual"),
        N_("exercise"),
        N_("system"),
        N_("test"),
        N_("draft"),
        N_("active"),
        N_("cancelled"),
        N_("ended"),
        N_("alert"),
        N_("update"),
        N_("cancel"),
        N_("ack"),
        N_("error"),
        N_("end"),
        N_("pending"),
        N_("sending"),
        N_("sent"),
        N_("retry_wait"),
        N_("failed"),
        N_("superseded"),
        N_("route"),
        N_("stop"),
        N_("trip"),
        N_("agency"),
        N_("component"),
    )
}


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The catalogue of `language` (English: the strings as written)."""
    if language == "en":
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import Translations

    path = LOCALE / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as f:
        catalog = read_po(f, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def date_formatter(language: str) -> Callable[[datetime, ZoneInfo], str]:
    """A time as a reader says it, in the publisher's zone: "Wed 1 Jul 2099, 6:00 PM MDT",
    "mer. 1 juil. 2099, 18:00 -0600"."""
    from babel.dates import format_datetime

    pattern = "EEE d MMM y, h:mm a z" if language == "en" else "EEE d MMM y, HH:mm z"

    def when(dt: datetime, tz: ZoneInfo) -> str:
        return format_datetime(dt.astimezone(tz), pattern, tzinfo=tz, locale=language)

    return when


def label_for(t: gettext.NullTranslations) -> Callable[[Any], str]:
    def label(value: Any) -> str:
        text = str(getattr(value, "value", value))
        return t.gettext(LABELS[text]) if text in LABELS else text.replace("_", " ")

    return label
