"""A loopback fake of the X API v2 endpoints Clarion uses: `POST /2/tweets`, and for images
`POST /2/media/upload` (multipart `media` + `media_category`, answering `{"data": {"id"}}`) and
`POST /2/media/metadata` (`{"id", "metadata": {"alt_text": {"text"}}}`).

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

    def __init__(self) -> None:
        super().__init__()
        self.media: dict[str, dict[str, Any]] = {}

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
        if req.method == "POST" and req.path == "/2/media/upload":
            fields = req.multipart()
            if "media" not in fields:
                return Response(400, {"title": "Invalid Request", "detail": "media is required"})
            with self.lock:
                mid = str(next(self.ids))
                self.media[mid] = {
                    "bytes": fields["media"].get_payload(decode=True),
                    "category": fields["media_category"].get_content()
                    if "media_category" in fields
                    else None,
                    "alt": None,
                }
            return Response(200, {"data": {"id": mid, "media_key": f"3_{mid}"}})
        if req.method == "POST" and req.path == "/2/media/metadata":
            body = json.loads(req.body or b"{}")
            media = self.media.get(str(body.get("id")))
            if media is None:
                return Response(400, {"title": "Invalid Request", "detail": "unknown media id"})
            media["alt"] = body["metadata"]["alt_text"]["text"]
            return Response(200, {"data": {"associated_metadata": True}})
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
        media_ids = (body.get("media") or {}).get("media_ids") or []
        if any(m not in self.media for m in media_ids):
            return Response(400, {"title": "Invalid Request", "detail": "unknown media id"})
        post = self.new_post(
            text=text,
            reply_to=reply,
            has_url=bool(re.search(r"https?://", text)),
            media=[self.media[m] for m in media_ids],
        )
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
