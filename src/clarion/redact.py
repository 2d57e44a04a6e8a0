"""Secrets never leave in a log line or a stored error.

Every secret Clarion resolves (tokens, passwords, webhook URLs) is registered here; error
messages kept in the database and every log record are scrubbed of them. A platform that echoes
a token in its error, or a library that puts a webhook URL in an exception, cannot leak it into
`clarion status`, the API or a log file.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit

MASK = "***"
MIN_LENGTH = 6  # shorter values would mask ordinary words
_lock = threading.Lock()
_secrets: list[str] = []


def register(value: str) -> None:
    """Remember a secret (and, for a URL, the path and query that make it secret)."""
    candidates = {value.strip()}
    if value.startswith(("http://", "https://")):
        parts = urlsplit(value)
        candidates.add(parts.path)
        candidates.update(p for p in parts.path.split("/") if len(p) >= 16)
        if parts.query:
            candidates.add(parts.query)
    with _lock:
        for c in candidates:
            if len(c) >= MIN_LENGTH and c not in _secrets:
                _secrets.append(c)
        _secrets.sort(key=len, reverse=True)  # the longest first: no half-masked secret


def redact(text: str) -> str:
    with _lock:
        secrets = list(_secrets)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Scrub every handler of `logger` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
