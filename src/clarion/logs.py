"""Logging: plain lines for a terminal, or one JSON object per line for a log pipeline
(`CLARION_LOG_FORMAT=json`), through structlog's formatter over the standard library's logging,
so every library's records come out the same way. Records about a delivery carry its
`delivery_id`, `notice_id` and `channel` as fields; secrets are scrubbed either way.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

from clarion.redact import RedactingFilter


def delivery_fields(c: object) -> dict[str, object]:
    """`extra=` for a log call about a claimed delivery."""
    return {
        "delivery_id": getattr(c, "id", None),
        "notice_id": getattr(c, "notice_id", None),
        "channel": getattr(c, "channel", None),
    }


def setup(verbose: bool = False, fmt: str | None = None) -> None:
    fmt = (fmt or os.environ.get("CLARION_LOG_FORMAT") or "text").lower()
    if fmt not in ("text", "json"):
        raise ValueError("CLARION_LOG_FORMAT must be text or json")
    pre_chain: list[structlog.typing.Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        renderer: structlog.typing.Processor = structlog.processors.JSONRenderer()
        pre_chain.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for h in list(root.handlers):
        if isinstance(h, _Stderr):  # ours, from an earlier call: replaced below
            root.removeHandler(h)
    if root.handlers:  # an embedding program (or a test runner) already decides where logs go
        for h in root.handlers:
            if not any(isinstance(f, RedactingFilter) for f in h.filters):
                h.addFilter(RedactingFilter())
        return
    handler = _Stderr()
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of each record (not at start-up)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass
