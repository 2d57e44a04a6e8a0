"""Notices written on the desk, from draft to sent.

A draft is a new alert, or an update, cancellation or correction of a thread. Submitting one:
- an Actual notice at or above `[desk] approval_min_severity` waits for a second person with
  the approver role (`awaiting_approval`); its author can never approve it;
- anything else, and an approved notice, is `scheduled` (for now, or for the time asked) and
  sent by the first worker to see it due: the draft turns `sent` in the same transaction that
  stores the notice and queues its deliveries, so it goes out exactly once, even when several
  workers and web replicas race for it, and a crash leaves it scheduled, not lost.
Test and Exercise notices need no approval: routing sends them only to channels whose
`statuses` list them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from clarion.channels.base import Channel, RenderContext, Rendered
from clarion.config import Config
from clarion.desk import audit
from clarion.desk.accounts import User
from clarion.manual import AreaIn, FollowUpError, GeocodeIn, NoticeIn, follow_up, new_alert
from clarion.model import MsgType, Notice, Severity, Status
from clarion.pipeline import IngestResult, ingest, permalink
from clarion.routing import route, rule_matches
from clarion.store import Store
from clarion.store.schema import drafts, notices, threads

ACTIONS = ("alert", "update", "cancel", "correction")
OPEN_STATES = ("awaiting_approval", "scheduled")
SOURCE = "desk"
API_SOURCE = "api"
API_AUTHOR = "api:"  # drafts written through the API with a key that is not trusted


class DeskError(ValueError):
    """What was asked cannot be done; the message says why, in words for the operator."""


@dataclass(frozen=True)
class Draft:
    id: int
    action: str
    thread_id: int | None
    body: NoticeIn
    status: Status
    severity: Severity
    headline: str
    state: str
    author: str
    approver: str | None
    created_at: datetime
    decided_at: datetime | None
    send_at: datetime | None
    sent_at: datetime | None
    notice_id: int | None
    reason: str | None

    @property
    def is_drill(self) -> bool:
        return self.status in (Status.TEST, Status.EXERCISE)


def _draft(r: Any) -> Draft:
    return Draft(
        id=r.id,
        action=r.action,
        thread_id=r.thread_id,
        body=NoticeIn.model_validate(r.body),
        status=Status(r.status),
        severity=Severity(r.severity),
        headline=r.headline,
        state=r.state,
        author=r.author,
        approver=r.approver,
        created_at=r.created_at,
        decided_at=r.decided_at,
        send_at=r.send_at,
        sent_at=r.sent_at,
        notice_id=r.notice_id,
        reason=r.reason,
    )


def get(store: Store, draft_id: int) -> Draft:
    with store.read() as conn:
        r = conn.execute(select(drafts).where(drafts.c.id == draft_id)).first()
    if r is None:
        raise DeskError(f"There is no draft {draft_id}.")
    return _draft(r)


def listing(store: Store, states: tuple[str, ...] | None = None, limit: int = 50) -> list[Draft]:
    q = select(drafts).order_by(drafts.c.id.desc()).limit(limit)
    if states:
        q = q.where(drafts.c.state.in_(states))
    with store.read() as conn:
        return [_draft(r) for r in conn.execute(q)]


# --- What a draft becomes ---------------------------------------------------------------------


def latest(store: Store, thread_id: int) -> tuple[Any, Notice]:
    """A thread's row and its newest notice."""
    with store.read() as conn:
        t = conn.execute(select(threads).where(threads.c.id == thread_id)).first()
        if t is None:
            raise DeskError(f"There is no notice {thread_id}.")
        data = conn.execute(
            select(notices.c.data).where(notices.c.id == t.latest_notice_id)
        ).scalar_one()
    return t, Notice.model_validate(data)


def build_notice(
    store: Store, config: Config, action: str, body: NoticeIn, thread_id: int | None
) -> tuple[Notice, Notice | None]:
    """The notice a draft would be now, and the thread's newest before it (for follow-ups)."""
    if action not in ACTIONS:
        raise DeskError(f"Unknown action {action!r}.")
    if action == "alert":
        return new_alert(config, body, kind=SOURCE), None
    if thread_id is None:
        raise DeskError(f"An {action} needs the notice it follows.")
    thread, previous = latest(store, thread_id)
    if thread.state != "active":
        raise DeskError(f"Notice {thread_id} has already {thread.state}: nothing to {action}.")
    try:
        if action == "update":
            return follow_up(config, previous, MsgType.UPDATE, body), previous
        if action == "correction":
            return follow_up(config, previous, MsgType.UPDATE, body, note="Correction"), previous
        return follow_up(config, previous, MsgType.CANCEL, body, note=body.description), previous
    except FollowUpError as exc:
        raise DeskError(str(exc)) from None


def _weight(notice: Notice, previous: Notice | None) -> Severity:
    """The severity that decides approval: cancelling an extreme warning is as grave as it."""
    if previous is not None and previous.severity.rank > notice.severity.rank:
        return previous.severity
    return notice.severity


def _fit(value: str | None, limit: int) -> str | None:
    """`value` within the form's limit (a source's notice may say more than the desk allows)."""
    if value is None:
        return None
    value = value.strip()
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def prefill(action: str, previous: Notice) -> NoticeIn:
    """The pre-drafted text of a follow-up: the notice as it stands, reworded for the action.

    Any story can be followed up, whatever its source wrote: what does not fit the desk's own
    limits (a headline longer than 500 characters, 150 areas, a link that is not http(s)) is
    shortened or left out here, never refused."""
    info = previous.info()
    assert info is not None
    web = info.web or previous.link
    fields: dict[str, Any] = {
        "headline": _fit(info.headline or previous.headline, 500) or previous.identifier[:500],
        "event": _fit(info.event, 200),
        "description": _fit(info.description, 20_000),
        "instruction": _fit(info.instruction, 5_000),
        "severity": info.severity,
        "urgency": info.urgency,
        "certainty": info.certainty,
        "categories": [c[:64] for c in info.categories][:12] or ["Other"],
        "status": previous.status,
        "web": web
        if web and len(web) <= 2000 and web.startswith(("http://", "https://"))
        else None,
        "language": _fit(info.language, 35),
        "areas": [
            AreaIn(
                description=_fit(a.description, 1000) or "Area",
                geocodes=[
                    GeocodeIn(name=g.name[:64], value=g.value[:128])
                    for g in a.geocodes[:100]
                    if g.name.strip() and g.value.strip()
                ],
            )
            for a in info.areas[:100]
        ],
    }
    if action == "cancel":
        fields["description"] = (
            f"This notice is cancelled: {fields['headline']}. The earlier message no longer "
            "applies; no further action is needed."
        )
        fields["instruction"] = None
    elif action == "correction":
        fields["description"] = _fit(
            "CORRECTION: this replaces our earlier message, which was wrong. "
            + (info.description or ""),
            20_000,
        )
    return NoticeIn.model_validate(fields)


@dataclass
class ChannelPreview:
    name: str
    kind: str
    posts: list[dict[str, Any]]  # {label, text, count, limit, over}
    cost: float = 0.0
    parts: int = 1


@dataclass
class Preview:
    notice: Notice
    channels: list[ChannelPreview] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (channel, why not)
    needs_approval: bool = False
    error: str | None = None

    @property
    def cost(self) -> float:
        return round(sum(c.cost for c in self.channels), 4)


def _posts(rendered: Rendered) -> list[dict[str, Any]]:
    """What a channel will post, as the operator would read it, per post."""
    fields = rendered.fields
    if "platforms" in fields:  # the preview channel: one per previewed platform
        return [
            {"label": name.capitalize(), **p, "over": p["count"] > p["limit"]}
            for name, p in fields["platforms"].items()
        ]
    if rendered.posts:
        head = fields.get("subject") or fields.get("title")
        limit = rendered.limit
        posts = []
        for i, post in enumerate(rendered.posts, start=1):
            label = (f"Subject: {head}" if head else "") if i == 1 else f"Reply {i}"
            posts.append(
                {
                    "label": label,
                    "text": post.text,
                    "count": post.count,
                    "limit": limit,
                    "over": bool(limit and post.count and post.count > limit),
                }
            )
        return posts
    import json

    return [
        {
            "label": f"{fields.get('type', 'event')} (JSON)",
            "text": json.dumps(rendered.to_row(), ensure_ascii=False, default=str)[:1200],
            "count": None,
            "limit": None,
            "over": False,
        }
    ]


def preview(
    store: Store,
    config: Config,
    channels: Mapping[str, Channel],
    action: str,
    body: NoticeIn,
    thread_id: int | None,
) -> Preview:
    """Every channel's post for this draft, rendered by the channels the dispatcher uses."""
    notice, previous = build_notice(store, config, action, body, thread_id)
    notice = notice.model_copy(update={"source": SOURCE})
    out = Preview(notice=notice)
    out.needs_approval = config.desk.needs_approval(notice.status, _weight(notice, previous))
    chosen = route(notice, config)
    if thread_id is None:  # the id the new thread will most likely get: a link of the real length
        with store.read() as conn:
            thread_id_guess = int(conn.execute(select(func.max(threads.c.id))).scalar() or 0) + 1
        link = permalink(config, thread_id_guess)
    else:
        link = permalink(config, thread_id)
    for name, ch_cfg in config.channels.items():
        if name not in chosen:
            matched = any(rule_matches(r, notice) and name in r.channels for r in config.routes)
            if not matched:
                why = "no route sends this notice here"
            elif not ch_cfg.enabled:
                why = "channel disabled"
            else:
                statuses = ", ".join(s.value.capitalize() for s in ch_cfg.statuses)
                why = f"takes {statuses} notices only"
            out.skipped.append((name, why))
            continue
        channel = channels.get(name)
        if channel is None:
            out.skipped.append((name, "channel not running"))
            continue
        ctx = RenderContext(
            languages=tuple(config.clarion.languages), permalink=link, template=ch_cfg.template
        )
        rendered = channel.render(notice, ctx)
        out.channels.append(
            ChannelPreview(
                name=name,
                kind=channel.kind,
                posts=_posts(rendered),
                cost=rendered.cost,
                parts=max(1, rendered.parts),
            )
        )
    return out


# --- Lifecycle --------------------------------------------------------------------------------


def submit(
    store: Store,
    config: Config,
    channels: Mapping[str, Channel],
    author: User,
    action: str,
    body: NoticeIn,
    *,
    thread_id: int | None,
    send_at: datetime | None,
    now: datetime,
    ip: str | None = None,
) -> Draft:
    """Record a draft; send it at once when it needs no approval and is not for later."""
    if not author.can("editor"):
        raise DeskError("Only editors can write notices.")
    notice, previous = build_notice(store, config, action, body, thread_id)
    needs = config.desk.needs_approval(notice.status, _weight(notice, previous))
    if send_at is not None and send_at <= now:
        send_at = None
    state = "awaiting_approval" if needs else "scheduled"
    with store.write() as conn:
        draft_id = int(
            conn.execute(
                insert(drafts)
                .values(
                    action=action,
                    thread_id=thread_id,
                    body=body.model_dump(mode="json", exclude_none=True),
                    status=notice.status.value,
                    severity=_weight(notice, previous).value,
                    headline=body.headline,
                    state=state,
                    author=author.username,
                    created_at=now,
                    # Approved-and-due is `scheduled` for now: a crash before the send below
                    # leaves it for the scheduler, not lost.
                    send_at=send_at if needs else (send_at or now),
                )
                .returning(drafts.c.id)
            ).scalar_one()
        )
        where = f"thread {thread_id}" if thread_id else "new notice"
        detail = f"{action} ({notice.status.value}, {notice.severity.value}) for {where}: "
        detail += body.headline
        if needs:
            detail += " — awaiting approval"
        elif send_at:
            detail += f" — scheduled for {send_at.isoformat()}"
        audit.record(conn, now, author.username, "compose", f"draft {draft_id}", detail, ip)
    if state == "scheduled" and send_at is None:
        send(store, config, channels, draft_id, actor=author.username, now=now, ip=ip)
    return get(store, draft_id)


def approve(
    store: Store,
    config: Config,
    channels: Mapping[str, Channel],
    draft_id: int,
    approver: User,
    *,
    now: datetime,
    ip: str | None = None,
) -> Draft:
    if not approver.can("approver"):
        raise DeskError("Only approvers can approve notices.")
    d = get(store, draft_id)
    if d.author == approver.username:
        raise DeskError("You wrote this notice: a second person must approve it.")
    if d.state != "awaiting_approval":
        raise DeskError(f"Draft {draft_id} is {d.state.replace('_', ' ')}, not awaiting approval.")
    later = d.send_at is not None and d.send_at > now
    with store.write() as conn:
        res = conn.execute(
            update(drafts)
            .where(drafts.c.id == draft_id, drafts.c.state == "awaiting_approval")
            .values(
                state="scheduled",
                approver=approver.username,
                decided_at=now,
                send_at=d.send_at if later else now,
            )
        )
        if res.rowcount != 1:
            raise DeskError(f"Draft {draft_id} was decided by someone else a moment ago.")
        when = f"; to be sent {d.send_at.isoformat()}" if later and d.send_at else ""
        audit.record(
            conn, now, approver.username, "approve", f"draft {draft_id}", d.headline + when, ip
        )
    if not later:
        send(store, config, channels, draft_id, actor=approver.username, now=now, ip=ip)
    return get(store, draft_id)


def close(
    store: Store,
    draft_id: int,
    user: User,
    decision: str,
    reason: str,
    *,
    now: datetime,
    ip: str | None,
) -> Draft:
    """Reject (an approver, not the author) or withdraw (the author or an approver)."""
    d = get(store, draft_id)
    if decision == "reject":
        if not user.can("approver"):
            raise DeskError("Only approvers can reject notices.")
        if d.author == user.username:
            raise DeskError("You wrote this notice: withdraw it instead.")
        allowed: tuple[str, ...] = ("awaiting_approval",)
        state = "rejected"
    else:
        if d.author != user.username and not user.can("approver"):
            raise DeskError("Only its author or an approver can withdraw a notice.")
        allowed = OPEN_STATES
        state = "withdrawn"
    with store.write() as conn:
        res = conn.execute(
            update(drafts)
            .where(drafts.c.id == draft_id, drafts.c.state.in_(allowed))
            .values(state=state, decided_at=now, reason=reason or None, approver=user.username)
        )
        if res.rowcount != 1:
            raise DeskError(
                f"Draft {draft_id} is {d.state.replace('_', ' ')}: it cannot be {state}."
            )
        audit.record(
            conn, now, user.username, decision, f"draft {draft_id}", reason or d.headline, ip
        )
    return get(store, draft_id)


class _Taken(Exception):
    """Another worker sent this draft first (or it was withdrawn): undo this attempt."""


def send(
    store: Store,
    config: Config,
    channels: Mapping[str, Channel],
    draft_id: int,
    *,
    actor: str,
    now: datetime,
    ip: str | None = None,
) -> bool:
    """Send a scheduled draft now. True if this call sent it; a draft that cannot go out (its
    thread was cancelled meanwhile, or it says nothing new) turns `failed`, with the reason."""
    d = get(store, draft_id)
    if d.state != "scheduled":
        return False
    try:
        notice, _ = build_notice(store, config, d.action, d.body, d.thread_id)
    except DeskError as exc:
        _fail(store, d, str(exc), actor, now, ip)
        return False

    def mark_sent(conn: Connection, result: IngestResult) -> None:
        if not result.stored:
            raise DeskError("It says exactly what the notice already says: nothing new to send.")
        res = conn.execute(
            update(drafts)
            .where(drafts.c.id == draft_id, drafts.c.state == "scheduled")
            .values(state="sent", sent_at=now, notice_id=result.stored[0])
        )
        if res.rowcount != 1:
            raise _Taken
        audit.record(
            conn,
            now,
            actor,
            "send",
            f"draft {draft_id}",
            f"{d.action} sent as notice {result.stored[0]}, {result.deliveries} deliveries queued",
            ip,
        )

    try:
        # The desk is the operator's: it may follow up any story, of any source (`follow`).
        ingest(
            store,
            config,
            channels,
            [notice],
            # A draft an API key wrote (held for approval) is the API's notice once sent.
            source=API_SOURCE if d.author.startswith(API_AUTHOR) else SOURCE,
            now=now,
            within=mark_sent,
            follow=d.thread_id if d.action != "alert" else None,
        )
    except _Taken:
        return False
    except DeskError as exc:
        _fail(store, d, str(exc), actor, now, ip)
        return False
    return True


def _fail(store: Store, d: Draft, why: str, actor: str, now: datetime, ip: str | None) -> None:
    with store.write() as conn:
        res = conn.execute(
            update(drafts)
            .where(drafts.c.id == d.id, drafts.c.state == "scheduled")
            .values(state="failed", reason=why)
        )
        if res.rowcount == 1:
            audit.record(conn, now, actor, "send_failed", f"draft {d.id}", why, ip)


def send_due(store: Store, config: Config, channels: Mapping[str, Channel], now: datetime) -> int:
    """Send every scheduled draft now due (the workers' scheduler calls this)."""
    with store.read() as conn:
        ids = [
            r.id
            for r in conn.execute(
                select(drafts.c.id)
                .where(drafts.c.state == "scheduled", drafts.c.send_at <= now)
                .order_by(drafts.c.send_at, drafts.c.id)
            )
        ]
    return sum(send(store, config, channels, i, actor="scheduler", now=now) for i in ids)
