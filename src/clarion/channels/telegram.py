"""Telegram, through the Bot API (`sendMessage`, `editMessageText`), with httpx.

Text is sent with `parse_mode=HTML`: the headline in bold, everything escaped. Telegram counts
the 4,096-character limit on the text after its entities are parsed, in UTF-16 code units, so
the plain text is fitted first and escaped afterwards. Updates reply to the previous message
(`reply_parameters`), or edit it when `edit_on_update` is set. The Bot API has no idempotency
key: after a crash mid-send the dispatcher flags the delivery instead of resending it.
"""

from __future__ import annotations

import html
from typing import Any, Literal

import httpx
from pydantic import field_validator

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
from clarion.channels.http import HttpChannel, classify_http, json_body, request
from clarion.configtypes import ChannelConfigBase, Duration, SecretRef, http_url
from clarion.model import Notice


class TelegramChannelConfig(ChannelConfigBase):
    """A Telegram channel or group, through a bot (Bot API)."""

    kind: Literal["telegram"]
    token: SecretRef
    chat_id: str  # "@public_channel" or a numeric chat id
    api_base: str = "https://api.telegram.org"
    edit_on_update: bool = False
    timeout: Duration = 15.0

    _check_url = field_validator("api_base")(http_url)


class TelegramChannel(HttpChannel):
    # PLATFORMS.md: about 1 message/s per chat, 20/min in groups.
    profile = Profile(
        limit=4096,
        counting="utf16",
        threads=True,
        edit=True,
        delete=True,
        idempotency=False,
        rate_limit=(20, 60.0),
    )
    kind = "telegram"

    def __init__(
        self,
        name: str,
        token: str,
        chat_id: str,
        *,
        api_base: str = "https://api.telegram.org",
        edit_on_update: bool = False,
        timeout: float = 15.0,
        languages: tuple[str, ...] = (),
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(name, timeout=timeout, languages=languages, http=http)
        self.chat_id = chat_id
        self.edit_on_update = edit_on_update
        self._base = f"{api_base.rstrip('/')}/bot{token}"

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        r = self.fit(notice, ctx)
        head, _, rest = r.text.partition("\n")
        body = f"<b>{html.escape(head)}</b>" + (f"\n{html.escape(rest)}" if rest else "")
        return Rendered.from_row(
            {
                "text": body,
                "plain": r.text,
                "count": r.count,
                "limit": r.limit,
                "language": r.language,
            }
        )

    def _call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        what = f"Telegram {method}"
        resp = request(self._http, "POST", f"{self._base}/{method}", what, json=payload)
        data = json_body(resp, what)
        if isinstance(data, dict) and data.get("ok") is True:
            return dict(data.get("result") or {})
        desc = str(data.get("description", "")) if isinstance(data, dict) else ""
        params = data.get("parameters") or {} if isinstance(data, dict) else {}
        code = (
            int(data.get("error_code") or resp.status_code)
            if isinstance(data, dict)
            else resp.status_code
        )
        if code == 400 and "chat not found" in desc.lower():
            raise ChannelError(ErrorKind.AUTH, f"{what}: {desc} (is the bot in the chat?)")
        raise classify_http(code, params.get("retry_after"), what, desc)

    def send(self, out: Outgoing) -> Receipt:
        text = str(out.payload["text"])
        if self.edit_on_update and out.previous is not None:
            result = self._call(
                "editMessageText",
                {
                    "chat_id": self.chat_id,
                    "message_id": int(out.previous.post_id),
                    "text": text,
                    "parse_mode": "HTML",
                },
            )
        else:
            payload: dict[str, Any] = {"chat_id": self.chat_id, "text": text, "parse_mode": "HTML"}
            if out.previous is not None:
                payload["reply_parameters"] = {
                    "message_id": int(out.previous.post_id),
                    "allow_sending_without_reply": True,
                }
            result = self._call("sendMessage", payload)
        message_id = str(result.get("message_id", ""))
        if not message_id:
            raise ChannelError(ErrorKind.RETRYABLE, "Telegram answered ok without a message_id")
        url = None
        if self.chat_id.startswith("@"):
            url = f"https://t.me/{self.chat_id[1:]}/{message_id}"
        return Receipt(post_id=message_id, url=url)


def _build(cfg: TelegramChannelConfig, deps: Deps) -> TelegramChannel:
    return TelegramChannel(
        deps.name,
        deps.secret("token", cfg.token),
        cfg.chat_id,
        api_base=cfg.api_base,
        edit_on_update=cfg.edit_on_update,
        timeout=cfg.timeout,
        languages=deps.languages,
    )


CONNECTOR = ChannelConnector(
    kind="telegram",
    config=TelegramChannelConfig,
    profile=TelegramChannel.profile,
    build=_build,
    offline=lambda parts: TelegramChannel("telegram", "0:-", "@channel"),
)
