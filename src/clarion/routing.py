"""Routing: which channels a notice goes to. Pure: a function of the notice and the config.

A notice goes to the union of the channels of every rule it matches, minus channels that are
disabled or that do not accept its status (Test, Exercise, Draft and System notices reach a
channel only when that channel lists the status in `statuses`).
"""

from __future__ import annotations

from datetime import datetime

from clarion.config import Config, RouteRule
from clarion.model import MsgType, Notice, SignatureState


def rule_matches(rule: RouteRule, notice: Notice) -> bool:
    if rule.sources is not None and notice.source not in rule.sources:
        return False
    if rule.signature == "valid" and notice.signature is not SignatureState.VALID:
        return False
    if rule.statuses is not None and notice.status not in rule.statuses:
        return False
    if rule.msg_types is not None and notice.msg_type not in rule.msg_types:
        return False
    # Severity gates alerts and updates; a Cancel must reach wherever the alert went, and its
    # own severity is often "Minor"/"Unknown" (the threat is over).
    if (
        rule.min_severity is not None
        and not notice.msg_type.closes
        and notice.severity.rank < rule.min_severity.rank
    ):
        return False
    if rule.categories is not None:
        wanted = {c.lower() for c in rule.categories}
        if not wanted & notice.categories:
            return False
    if rule.geocodes is not None and not _geocode_match(rule.geocodes, notice):
        return False
    return not (rule.entities is not None and not _entity_match(rule.entities, notice))


def _geocode_match(wanted: list[str], notice: Notice) -> bool:
    codes = notice.geocodes
    values = {v for _, v in codes}
    for w in wanted:
        if ":" in w:
            name, value = w.split(":", 1)
            if (name.upper(), value) in codes:
                return True
        elif w in values:
            return True
    return False


def _entity_match(wanted: list[str], notice: Notice) -> bool:
    have = {(e.kind, e.id) for e in notice.entities}
    ids = {e.id for e in notice.entities}
    for w in wanted:
        if ":" in w:
            kind, ident = w.split(":", 1)
            if (kind, ident) in have:
                return True
        elif w in ids:
            return True
    return False


def is_stale(notice: Notice, now: datetime) -> bool:
    """An alert or update that is over says nothing true any more: over at its event's end when
    it has one, else at its message's expiry (`Notice.over_at`). An expired message whose event
    goes on (an NWS warning past `expires` but before `ends`) is not stale."""
    return is_over(notice.msg_type, notice.over_at, now)


def is_over(msg_type: MsgType, over_at: datetime | None, now: datetime) -> bool:
    """`is_stale`, from a message's type and its `over_at` alone (what an outbox row holds)."""
    return not msg_type.closes and over_at is not None and over_at <= now


def route(notice: Notice, config: Config) -> list[str]:
    """The names of the channels this notice goes to, in config order."""
    chosen: set[str] = set()
    for rule in config.routes:
        if rule_matches(rule, notice):
            chosen.update(rule.channels)
    out = []
    for name, channel in config.channels.items():
        if name in chosen and channel.enabled and notice.status in channel.statuses:
            out.append(name)
    return out
