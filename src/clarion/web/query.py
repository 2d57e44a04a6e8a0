"""What the public web surface shares: the filters readers give (`NoticeFilter`, which lives
with the store that answers it), ids in paths, and what a failed delivery may say in public."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from clarion.store import public
from clarion.store.filters import MAX_PLACE_WORDS, NoticeFilter
from clarion.web.i18n import N_

__all__ = ["MAX_ID", "MAX_PLACE_WORDS", "NoticeFilter", "ThreadId", "Version", "known_source"]

# Ids in paths: positive, and within a 64-bit integer (a larger one would overflow the
# database driver, not find nothing).
MAX_ID = 2**63 - 1
ThreadId = Annotated[int, Path(ge=1, le=MAX_ID, description="The notice's (thread's) id")]
Version = Annotated[int, Path(ge=1, le=2**31 - 1, description="A version of the notice")]


# What the public may read of a failed or waiting delivery: its kind, in plain words. The
# platform's own message can hold the channel's configuration (a webhook URL with its token)
# and is for operators only (the desk, `clarion status`).
PUBLIC_ERRORS = {
    "retryable": N_("the platform did not answer; retrying"),
    "rate_limited": N_("the platform asked to wait; retrying"),
    "auth": N_("the channel's credential needs renewing"),
    "permanent": N_("the platform refused the post"),
    "ambiguous": N_("unknown whether it was posted; an operator is checking"),
    "over_limit": N_("waiting for the channel's cap or budget"),
}


def public_error(kind: str | None, state: str) -> str | None:
    if state in ("sent", "superseded", "cancelled") or kind is None:
        return None
    return PUBLIC_ERRORS.get(kind, N_("not posted yet"))


def known_source(store: Any, config: Any, name: str) -> bool:
    """A source the public may ask for: a configured one, or one that stored notices (the desk,
    the API, a source since removed from the configuration)."""
    if name in config.sources:
        return True
    with store.read() as conn:
        return public.has_notices_from(conn, name)
