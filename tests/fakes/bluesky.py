"""A loopback fake of an AT Protocol PDS: the XRPC methods Clarion's Bluesky channel uses.

`com.atproto.server.createSession` / `refreshSession` (JWT-shaped tokens with `exp`, as the SDK
decodes them), `com.atproto.repo.createRecord` (with a caller-chosen TID record key: a key
that exists answers **500**, as the reference PDS does), `com.atproto.repo.getRecord`
(`RecordNotFound` as 400). Errors are XRPC-shaped: `{"error", "message"}`. Records are checked
as the lexicon says: text of at most 300 graphemes, facet byte ranges inside the text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from typing import Any

import regex

from tests.fakes.chat import FakePlatform
from tests.fakes.http import Request, Response

TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")


def _jwt(payload: dict[str, Any]) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc({'alg': 'HS256', 'typ': 'JWT'})}.{enc(payload)}.c2ln"


class FakePds(FakePlatform):
    HANDLE = "alerts.example.org"
    PASSWORD = "abcd-efgh-ijkl-mnop"
    DID = "did:plc:clarionalerts0000000000"

    def __init__(self) -> None:
        super().__init__()
        self.tokens: set[str] = set()
        self.records: dict[str, dict[str, Any]] = {}
        self.blobs: dict[str, bytes] = {}
        self.handles: dict[str, str] = {self.HANDLE: self.DID}  # resolveHandle answers these

    def revoke(self) -> None:
        self.revoked = True
        self.tokens.clear()

    def _session(self) -> dict[str, Any]:
        now = int(time.time())
        access = _jwt(
            {
                "scope": "com.atproto.appPass",
                "sub": self.DID,
                "iat": now,
                "exp": now + 7200,
                "aud": "did:web:fake",
            }
        )
        refresh = _jwt(
            {
                "scope": "com.atproto.refresh",
                "sub": self.DID,
                "iat": now,
                "exp": now + 86400,
                "jti": str(now),
            }
        )
        self.tokens.add(access)
        return {
            "accessJwt": access,
            "refreshJwt": refresh,
            "handle": self.HANDLE,
            "did": self.DID,
            "active": True,
        }

    @staticmethod
    def _error(status: int, error: str, message: str) -> Response:
        return Response(status, {"error": error, "message": message})

    def handle(self, req: Request) -> Response:
        method = req.path.removeprefix("/xrpc/")
        if method == "com.atproto.server.createSession":
            body = json.loads(req.body or b"{}")
            if (
                self.revoked
                or body.get("identifier") != self.HANDLE
                or body.get("password") != self.PASSWORD
            ):
                return self._error(401, "AuthenticationRequired", "Invalid identifier or password")
            return Response(200, self._session())
        token = req.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return self._error(401, "ExpiredToken", "Token has been revoked")
        if method == "com.atproto.identity.resolveHandle":
            did = self.handles.get(req.query.get("handle", "").lower())
            if did is None:
                return self._error(400, "InvalidRequest", "Unable to resolve handle")
            return Response(200, {"did": did})
        if method == "com.atproto.repo.getRecord":
            uri = f"at://{req.query.get('repo')}/{req.query.get('collection')}/{req.query.get('rkey')}"
            rec = self.records.get(uri)
            if rec is None:
                return self._error(400, "RecordNotFound", f"Could not locate record: {uri}")
            return Response(200, {"uri": uri, "cid": rec["cid"], "value": rec["value"]})
        if method == "com.atproto.repo.uploadBlob":
            cid = "bafkrei" + hashlib.sha256(req.body).hexdigest()[:52]
            self.blobs[cid] = req.body
            return Response(
                200,
                {
                    "blob": {
                        "$type": "blob",
                        "ref": {"$link": cid},
                        "mimeType": _mime(req.headers.get("content-type"), req.body),
                        "size": len(req.body),
                    }
                },
            )
        if method == "com.atproto.repo.createRecord":
            return self._create(json.loads(req.body or b"{}"))
        return self._error(501, "MethodNotImplemented", method)

    def _create(self, body: dict[str, Any]) -> Response:
        rkey, value = body.get("rkey"), body.get("record") or {}
        if rkey is not None and not TID.match(rkey):
            return self._error(400, "InvalidRequest", "Invalid record key: must be a TID")
        text = value.get("text", "")
        if len(regex.findall(r"\X", text)) > 300:
            return self._error(
                400,
                "InvalidRequest",
                "Invalid app.bsky.feed.post record: "
                "Record/text must not be longer than 300 graphemes",
            )
        size = len(text.encode())
        for f in value.get("facets") or []:
            i = f["index"]
            if not 0 <= i["byteStart"] < i["byteEnd"] <= size:
                return self._error(400, "InvalidRequest", "facet index out of range")
        embed = value.get("embed") or {}
        if embed.get("$type") == "app.bsky.embed.images":
            for image in embed.get("images", []):
                if "alt" not in image:  # the lexicon requires alt text
                    return self._error(400, "InvalidRequest", "image is missing alt")
                if image["image"]["ref"]["$link"] not in self.blobs:
                    return self._error(400, "InvalidRequest", "blob not found")
        uri = f"at://{body['repo']}/{body['collection']}/{rkey}"
        if uri in self.records:  # what the reference PDS does on a duplicate key
            return self._error(500, "InternalServerError", "Internal Server Error")
        cid = (
            "bafyrei" + hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:52]
        )
        self.records[uri] = {"cid": cid, "value": value}
        reply = ((value.get("reply") or {}).get("parent") or {}).get("uri")
        with self.lock:
            self.posts[uri] = {"id": uri, "text": text, "reply_to": reply, "value": value}
        return Response(200, {"uri": uri, "cid": cid})

    def rate_limited(self, seconds: int) -> Any:
        def make() -> Response:  # built when the request arrives, so the reset is fresh
            return Response(
                429,
                {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                headers={
                    "ratelimit-limit": "5000",
                    "ratelimit-remaining": "0",
                    "ratelimit-reset": str(int(time.time()) + seconds),
                },
            )

        return make


def _mime(declared: str | None, body: bytes) -> str:
    """As the reference PDS does: the declared type, or a sniffed one when it says */*."""
    if declared and declared != "*/*":
        return declared
    if body.startswith(b"\x89PNG"):
        return "image/png"
    if body.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return "application/octet-stream"
