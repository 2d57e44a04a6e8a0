"""Clarion's own fediverse account as a channel: each notice is delivered, signed, to the
inbox of every server with followers (once per server: its shared inbox).

A new notice is `Create(Note)`; an update is `Update(Note)` of the same Note (Mastodon shows
it as an edit); a cancellation is, per `on_cancel`, an update saying CANCELLED or a `Delete`.
The activity id is derived from the delivery id, so a resend after a crash is the same
activity (servers drop repeats). Each inbox reached is checkpointed: a retry goes only to the
inboxes that failed, and an inbox failing for longer than `drop_inbox_after` is dropped and
reported, so one dead server never holds the others back.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import Field, field_validator

from clarion.channels.base import (
    ChannelConnector,
    ChannelError,
    Deps,
    ErrorKind,
    Outgoing,
    Profile,
    Receipt,
    RenderContext,
    Rendered,
)
from clarion.configtypes import ChannelConfigBase, Duration, http_url
from clarion.fediverse import accounts
from clarion.fediverse.documents import AP, activity, actor_id, note
from clarion.fediverse.signatures import sign
from clarion.model import MsgType, Notice
from clarion.render.text import headline


class ActivityPubChannelConfig(ChannelConfigBase):
    """A fediverse account that Clarion itself is: @USERNAME@your-host, followed directly from
    Mastodon, Misskey, Pixelfed… (needs `clarion.public_url`, reachable from the internet)."""

    kind: Literal["activitypub"]
    username: str = Field(pattern=r"^[a-z0-9_]{1,30}$")
    display_name: str | None = None  # default: the publisher's name
    summary: str = Field(default="", max_length=2000)
    icon: str | None = None  # the avatar: an image URL
    manually_approves_followers: bool = False  # hold follow requests for an operator
    on_cancel: Literal["edit", "delete"] = "edit"  # edit the post to say CANCELLED, or delete it
    hashtags: list[str] = Field(default_factory=list)
    drop_inbox_after: Duration = 7 * 86400.0  # an inbox failing this long is dropped, reported
    alert_card: bool = False  # attach the alert card (served at /notices/N/card.png) first
    timeout: Duration = 15.0

    _check_icon = field_validator("icon")(lambda v: http_url(v) if v is not None else v)


log = logging.getLogger(__name__)


class ActivityPubChannel:
    kind = "activitypub"
    profile = Profile(
        limit=None,
        counting=None,
        threads=True,
        edit=True,
        delete=True,
        idempotency=True,
        images=True,
    )

    def __init__(
        self,
        name: str,
        *,
        username: str,
        base: str,
        http: httpx.Client,
        hashtags: list[str] | None = None,
        on_cancel: str = "edit",
        drop_after: float = 7 * 86400.0,
        languages: tuple[str, ...] = (),
        card: Any = None,
    ) -> None:
        self.name = name
        self._card = card  # (time zone, publisher) for the alert card's alt text, or None
        self.username = username
        self.base = base.rstrip("/")
        self.hashtags = list(hashtags or [])
        self.on_cancel = on_cancel
        self.drop_after = drop_after
        self.languages = languages
        self._http = http
        self._store: Any = None

    @property
    def actor(self) -> str:
        return actor_id(self.base, self.username)

    def use_store(self, store: Any) -> None:
        """The dispatcher hands over its store (followers and keys live there)."""
        self._store = store

    def store(self) -> Any:
        """The store its followers and keys live in, handed over by whoever runs the channel
        (the dispatcher, `clarion channels test`): a channel never opens a database itself."""
        if self._store is None:
            raise RuntimeError(
                f"channel {self.name}: the fediverse account needs the database handed to it"
            )
        return self._store

    def close(self) -> None:
        self._http.close()

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        permalink = ctx.permalink or self.base + "/"
        thread = ctx.thread_id or 0
        languages = self.languages or ctx.languages
        card = None
        if self._card is not None and thread:
            from clarion.render.card import card_alt

            card = card_alt(notice, languages, self._card[0])
        obj = note(
            notice,
            base=self.base,
            username=self.username,
            thread=thread,
            permalink=permalink,
            languages=languages,
            hashtags=self.hashtags,
            card=card,
        )
        if notice.msg_type is MsgType.ALERT:
            kind = "Create"
        elif notice.msg_type.closes and self.on_cancel == "delete":
            kind = "Delete"
        else:
            kind = "Update"
        text = headline(notice, languages)
        return Rendered.from_row(
            {"activity": kind, "object": obj, "text": text, "count": len(text), "limit": None}
        )

    def send(self, out: Outgoing) -> Receipt:
        store = self.store()
        now = datetime.now(UTC)
        private, _ = accounts.keypair(store, self.username, now)
        kind = str(out.payload["activity"])
        obj: dict[str, Any] = dict(out.payload["object"])
        if kind == "Update" and out.previous is None:
            kind = "Create"  # its first version never went out here: followers have nothing to edit
        if kind == "Delete":
            obj = {"id": obj["id"], "type": "Tombstone"}
        doc = activity(kind, f"{self.actor}/activities/{out.id}", self.actor, obj, now)
        body = json.dumps(doc, ensure_ascii=False).encode()
        done = set((out.progress or {}).get("inboxes_done") or [])
        targets = accounts.inboxes(store, self.username)
        failures: list[tuple[str, str]] = []
        for inbox in targets:
            if inbox in done:
                continue
            headers = sign("POST", inbox, body, f"{self.actor}#main-key", private, now=now)
            headers["Accept"] = AP
            try:
                resp = self._http.post(inbox, content=body, headers=headers)
            except httpx.HTTPError as exc:
                failures.append((inbox, f"{type(exc).__name__}: {exc}"))
                continue
            if resp.is_success:
                done.add(inbox)
                accounts.inbox_ok(store, self.username, inbox)
                if out.checkpoint is not None:
                    out.checkpoint({"inboxes_done": sorted(done)})
            else:
                failures.append((inbox, f"HTTP {resp.status_code}: {resp.text[:200]}"))
        dropped: list[str] = []
        for inbox, error in failures:
            dropped += accounts.inbox_failed(
                store, self.username, inbox, error, now, self.drop_after
            )
        if dropped:
            log.warning(
                "%s: dropped %d follower(s) whose server has failed for too long: %s",
                self.name,
                len(dropped),
                ", ".join(dropped[:5]),
            )
        still = set(accounts.inboxes(store, self.username))
        remaining = [(i, e) for i, e in failures if i in still]
        if remaining:
            raise ChannelError(
                ErrorKind.RETRYABLE,
                f"{len(remaining)} of {len(targets)} inbox(es) failed; the others have it "
                f"(first: {remaining[0][0]}: {remaining[0][1]})",
            )
        return Receipt(
            post_id=str(obj["id"]),
            url=str(out.payload["object"].get("url") or self.base + "/"),
            extra={"inboxes": len(done), "activity": doc["id"]},
        )


def _build(cfg: ActivityPubChannelConfig, deps: Deps) -> ActivityPubChannel:
    assert deps.public_url  # the config check requires it
    return ActivityPubChannel(
        deps.name,
        username=cfg.username,
        base=deps.public_url,
        # Followers' servers are addresses strangers choose: guarded like webhooks.
        http=deps.guarded(cfg.timeout),
        hashtags=cfg.hashtags,
        on_cancel=cfg.on_cancel,
        drop_after=cfg.drop_inbox_after,
        languages=deps.languages,
        card=deps.card() if cfg.alert_card else None,
    )


CONNECTOR = ChannelConnector(
    kind="activitypub",
    config=ActivityPubChannelConfig,
    profile=ActivityPubChannel.profile,
    build=_build,
)
