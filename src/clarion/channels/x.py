"""X (formerly Twitter), API v2 through tweepy, with the cost model X bills by.

Counting is twitter-text's weighted count (URLs 23, most CJK and emoji 2). Since 2026 X charges
per post, more when the post holds a URL (PLATFORMS.md); each rendered post records its price,
and `link_policy = "drop_when_costly"` posts the text without the link (the notice's own page
carries it) whenever the link would cost more. Plan caps and a monthly budget are enforced by
the dispatcher from those prices. Updates reply to the previous post.

tweepy has no request timeout and a fixed host: the channel gives it a requests session with a
timeout on every request; tests mount a transport on that session that leads to a loopback fake.
X has no idempotency key (a repeated text answers 403 "duplicate content"), so after a crash
mid-send the dispatcher flags the delivery instead of resending it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import Field

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
    lazy_module,
)
from clarion.channels.http import requests_maybe_sent
from clarion.channels.images import fetch_images
from clarion.channels.parts import post_parts
from clarion.configtypes import Duration, SecretRef, Threadable
from clarion.model import Notice
from clarion.net import guarded_client
from clarion.render.counting import URL_RE, count_x
from clarion.render.text import Fitted, compose_parts

if TYPE_CHECKING:
    import requests
    import tweepy
    from tweepy import auth as tweepy_auth
else:
    requests = lazy_module("requests")
    tweepy = lazy_module("tweepy")
    tweepy_auth = lazy_module("tweepy.auth")


class XChannelConfig(Threadable):
    """An X account (API v2, OAuth 1.0a user context), with X's per-post prices."""

    kind: Literal["x"]
    consumer_key: SecretRef
    consumer_secret: SecretRef
    access_token: SecretRef
    access_token_secret: SecretRef
    plan: Literal["pay_per_use", "public_utility", "legacy_free"] = "pay_per_use"
    cost_per_post: float | None = Field(default=None, ge=0)
    cost_per_post_with_url: float | None = Field(default=None, ge=0)
    link_policy: Literal["keep", "drop_when_costly"] = "keep"
    images: bool = True  # attach the alert's images (CAP resources), with alt text
    # Attach the alert card first: the areas' map, headline, severity and times, drawn by
    # Clarion (docs/subscriptions.md), for alerts with shapes. Needs `images`.
    alert_card: bool = False
    timeout: Duration = 20.0

    def default_daily_cap(self) -> int | None:
        cap = PLANS[self.plan]["daily_cap"]
        return int(cap) if cap else None


LIMIT = 280
API = "https://api.twitter.com"  # tweepy's host; X serves the v2 API on it and on api.x.com
MAX_IMAGES = 4
MAX_IMAGE_BYTES = 5 * 1024 * 1024
log = logging.getLogger(__name__)
PLANS: dict[str, dict[str, float]] = {
    # PLATFORMS.md: pay-per-use since Feb 2026 ($0.015; $0.20 with a URL from Apr 2026);
    # approved "public utility" apps post free; the legacy free tier allowed 17 posts a day.
    "pay_per_use": {"post": 0.015, "post_with_url": 0.20, "daily_cap": 0},
    "public_utility": {"post": 0.0, "post_with_url": 0.0, "daily_cap": 0},
    "legacy_free": {"post": 0.0, "post_with_url": 0.0, "daily_cap": 17},
}


def timeout_adapter(timeout: float) -> Any:
    """A requests adapter that puts `timeout` on every request tweepy makes without one
    (defined on first use: requests is loaded only when an X channel is built)."""
    from requests.adapters import HTTPAdapter

    class TimeoutAdapter(HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs["timeout"] = kwargs.get("timeout") or timeout
            return super().send(request, **kwargs)

    return TimeoutAdapter()


PROFILE = Profile(
    limit=LIMIT,
    counting="x-weighted",
    threads=True,
    delete=True,
    idempotency=False,
    cost_per_post=PLANS["pay_per_use"]["post"],
    images=True,
)


class XChannel:
    kind = "x"

    def __init__(
        self,
        name: str,
        *,
        consumer_key: str,
        consumer_secret: str,
        access_token: str,
        access_token_secret: str,
        plan: str = "pay_per_use",
        cost_per_post: float | None = None,
        cost_per_post_with_url: float | None = None,
        link_policy: str = "keep",
        timeout: float = 20.0,
        languages: tuple[str, ...] = (),
        session: requests.Session | None = None,
        thread_parts: int = 1,
        images: bool = True,
        fetch: httpx.Client | None = None,
        card: Any = None,
    ) -> None:
        self.name = name
        self.thread_parts = thread_parts
        # tweepy has no v2 media upload: the channel signs those two calls itself (OAuth 1.0a,
        # the same credentials), on tweepy's own session.
        self._auth = tweepy_auth.OAuth1UserHandler(
            consumer_key, consumer_secret, access_token, access_token_secret
        ).apply_auth()
        # Images come from URIs the publisher put in the alert (through the SSRF guard).
        self._card = card  # (time zone, publisher) for the alert card, or None
        self._fetch = (
            (fetch or guarded_client(timeout=timeout, follow_redirects=True)) if images else None
        )
        self.languages = languages
        self.link_policy = link_policy
        prices = PLANS[plan]
        self.price = cost_per_post if cost_per_post is not None else prices["post"]
        self.price_url = (
            cost_per_post_with_url
            if cost_per_post_with_url is not None
            else prices["post_with_url"]
        )
        self.client = tweepy.Client(
            consumer_key=consumer_key,
            consumer_secret=consumer_secret,
            access_token=access_token,
            access_token_secret=access_token_secret,
        )
        if session is None:
            session = requests.Session()
            session.mount("https://", timeout_adapter(timeout))
        self.client.session = session
        self.profile = dataclasses.replace(PROFILE, cost_per_post=self.price)

    def close(self) -> None:
        self.client.session.close()
        if self._fetch is not None:
            self._fetch.close()

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        langs = self.languages or ctx.languages
        parts = self._parts(notice, langs, ctx.permalink, ctx.template)
        texts = [p.text for p in parts]
        if (
            any(URL_RE.search(t) for t in texts)
            and self.link_policy == "drop_when_costly"
            and self.price_url > self.price
        ):
            bare = notice.model_copy(
                update={
                    "link": None,
                    "infos": [i.model_copy(update={"web": None}) for i in notice.infos],
                }
            )
            texts = [URL_RE.sub("", p.text).strip() for p in self._parts(bare, langs, None, None)]
        # X bills every post of a thread; a part holding a URL at the higher price.
        prices = [self.price_url if URL_RE.search(t) else self.price for t in texts]
        payload: dict[str, Any] = {
            "text": texts[0],
            "count": count_x(texts[0]),
            "limit": LIMIT,
            "language": parts[0].language,
            "cost": round(sum(prices), 6),
            "has_url": any(URL_RE.search(t) for t in texts),
        }
        if len(texts) > 1:
            payload["thread"] = [{"text": t, "count": count_x(t)} for t in texts[1:]]
        return Rendered.from_row(payload)

    def _parts(
        self,
        notice: Notice,
        langs: tuple[str, ...],
        permalink: str | None,
        template: str | None,
    ) -> list[Fitted]:
        return compose_parts(
            notice,
            limit=LIMIT,
            count=count_x,
            languages=langs,
            permalink=permalink,
            template=template,
            max_parts=self.thread_parts,
        )

    def send(self, out: Outgoing) -> Receipt:
        def post_one(i: int, text: str, parent: Receipt | None, root: Receipt | None) -> Receipt:
            media = self._media(out.notice) if i == 0 and out.previous is None else []
            return self._post(text, parent, media)

        receipt = post_parts(out, post_one)
        return Receipt(
            post_id=receipt.post_id,
            url=receipt.url,
            extra={**receipt.extra, "cost": out.payload.get("cost", 0.0)},
        )

    def _media(self, notice: Notice) -> list[str]:
        """Upload the notice's images (`POST /2/media/upload`), each with its description as
        alt text (`POST /2/media/metadata`, up to 1,000 characters). An image that fails is
        left out, never the post."""
        if self._fetch is None:
            return []
        ids: list[str] = []
        for image in fetch_images(
            self._fetch,
            notice,
            self.languages,
            limit=MAX_IMAGES,
            max_bytes=MAX_IMAGE_BYTES,
            who=self.name,
            card=self._card,
        ):
            try:
                resp = self.client.session.post(
                    f"{API}/2/media/upload",
                    files={"media": ("image", image.data, image.mime_type)},
                    data={"media_category": "tweet_image"},
                    auth=self._auth,
                )
                resp.raise_for_status()
                media_id = str(resp.json()["data"]["id"])
                if image.alt:
                    self.client.session.post(
                        f"{API}/2/media/metadata",
                        json={"id": media_id, "metadata": {"alt_text": {"text": image.alt[:1000]}}},
                        auth=self._auth,
                    ).raise_for_status()
            except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
                log.warning("%s: an image upload failed, posting without it: %r", self.name, exc)
                continue
            ids.append(media_id)
        return ids

    def _post(self, text: str, parent: Receipt | None, media: list[str]) -> Receipt:
        reply_to = parent.post_id if parent is not None else None
        try:
            resp = self.client.create_tweet(
                text=text, in_reply_to_tweet_id=reply_to, media_ids=media or None, user_auth=True
            )
        except tweepy.TooManyRequests as exc:
            reset = getattr(exc, "reset_time", None)
            wait = max(1.0, float(math.ceil(reset - time.time()))) if reset else None
            raise ChannelError(ErrorKind.RATE_LIMITED, f"X rate limit: {exc}", wait) from None
        except tweepy.Unauthorized as exc:
            raise ChannelError(ErrorKind.AUTH, f"X refused the credentials: {exc}") from None
        except tweepy.Forbidden as exc:
            if "duplicate" in str(exc).lower():
                raise ChannelError(ErrorKind.PERMANENT, f"X: duplicate content: {exc}") from None
            raise ChannelError(ErrorKind.AUTH, f"X forbade the post: {exc}") from None
        except tweepy.TwitterServerError as exc:
            raise ChannelError(ErrorKind.RETRYABLE, f"X server error: {exc}") from None
        except tweepy.HTTPException as exc:
            raise ChannelError(ErrorKind.PERMANENT, f"X rejected the post: {exc}") from None
        except (requests.RequestException, ValueError) as exc:
            # Garbage after the request went out (ValueError: an unreadable answer), or a
            # connection that broke after sending: the post may exist.
            maybe = isinstance(exc, ValueError) or requests_maybe_sent(exc)
            raise ChannelError(
                ErrorKind.RETRYABLE, f"X unreachable: {exc!r}", maybe_sent=maybe
            ) from None
        data = resp.data or {}
        post_id = str(data.get("id", ""))
        if not post_id:
            raise ChannelError(ErrorKind.RETRYABLE, "X answered without a post id", maybe_sent=True)
        return Receipt(post_id=post_id, url=f"https://x.com/i/status/{post_id}")


def _build(cfg: XChannelConfig, deps: Deps) -> XChannel:
    return XChannel(
        deps.name,
        consumer_key=deps.secret("consumer_key", cfg.consumer_key),
        consumer_secret=deps.secret("consumer_secret", cfg.consumer_secret),
        access_token=deps.secret("access_token", cfg.access_token),
        access_token_secret=deps.secret("access_token_secret", cfg.access_token_secret),
        plan=cfg.plan,
        cost_per_post=cfg.cost_per_post,
        cost_per_post_with_url=cfg.cost_per_post_with_url,
        link_policy=cfg.link_policy,
        timeout=cfg.timeout,
        languages=deps.languages,
        thread_parts=cfg.thread_parts,
        images=cfg.images,
        card=deps.card() if cfg.alert_card else None,
        fetch=deps.fetcher(cfg.timeout, cfg.images),
    )


def _offline(thread_parts: int) -> XChannel:
    return XChannel(
        "x",
        consumer_key="-",
        consumer_secret="-",
        access_token="-",
        access_token_secret="-",
        thread_parts=thread_parts,
    )


CONNECTOR = ChannelConnector(
    kind="x", config=XChannelConfig, profile=PROFILE, build=_build, offline=_offline
)
