"""A loopback fake of the X API v2 endpoint Clarion uses: `POST /2/tweets`.

OAuth 1.0a requests carry `Authorization: OAuth …` (the signature is not checked here, the
consumer key is); the body is `{"text", "reply": {"in_reply_to_tweet_id"}}`; the answer is
`{"data": {"id", "text"}}` with 201. A repeated identical text answers 403 "duplicate content"
as X does; 429 carries `x-rate-limit-reset`. `mount(session)` leads tweepy's requests session,
whose host is fixed, to this server: a transport given to the client, not a patch.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from tests.fakes.chat import FakePlatform
from tests.fakes.http import Request, Response


class _ToLoopback(HTTPAdapter):
    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = urlsplit(base)

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        url = urlsplit(request.url)
        request.url = urlunsplit((self.base.scheme, self.base.netloc, url.path, url.query, ""))
        kwargs["timeout"] = kwargs.get("timeout") or 0.5
        return super().send(request, **kwargs)


class FakeX(FakePlatform):
    CONSUMER_KEY = "x-consumer-key"

    def session(self) -> requests.Session:
        s = requests.Session()
        s.mount("https://api.twitter.com", _ToLoopback(self.url))
        return s

    def handle(self, req: Request) -> Response:
        auth = req.headers.get("authorization", "")
        if self.revoked or not auth.startswith("OAuth ") or self.CONSUMER_KEY not in auth:
            return Response(
                401,
                {
                    "title": "Unauthorized",
                    "type": "about:blank",
                    "status": 401,
                    "detail": "Unauthorized",
                },
            )
        if req.path != "/2/tweets" or req.method != "POST":
            return Response(404, {"title": "Not Found Error", "status": 404})
        body = json.loads(req.body or b"{}")
        text = body.get("text", "")
        if any(p["text"] == text for p in self.posts.values()):
            return Response(
                403,
                {
                    "detail": "You are not allowed to create a Tweet with duplicate content.",
                    "type": "about:blank",
                    "title": "Forbidden",
                    "status": 403,
                },
            )
        reply = (body.get("reply") or {}).get("in_reply_to_tweet_id")
        post = self.new_post(text=text, reply_to=reply, has_url=bool(re.search(r"https?://", text)))
        return Response(
            201, {"data": {"id": post["id"], "text": text, "edit_history_tweet_ids": [post["id"]]}}
        )

    def rate_limited(self, seconds: int) -> Any:
        def make() -> Response:  # built when the request arrives, so the reset is fresh
            return Response(
                429,
                {"title": "Too Many Requests", "status": 429},
                headers={"x-rate-limit-reset": str(int(time.time()) + seconds)},
            )

        return make
