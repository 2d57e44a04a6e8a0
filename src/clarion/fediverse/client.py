"""Requests Clarion's accounts make to other servers, signed: fetching a document (servers in
"secure mode" require signed GETs) and posting an activity to an inbox. Every address is a
stranger's, so every request goes through the SSRF guard."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

from clarion.fediverse import accounts
from clarion.fediverse.documents import AP, accept, actor_id
from clarion.fediverse.signatures import sign
from clarion.net import Bounded, bounded_get, guarded_client
from clarion.store import Store

# An actor or key document is a few KiB; Mastodon's largest are well under this.
MAX_DOCUMENT = 1024 * 1024


class Signer:
    def __init__(self, store: Store, base: str, networks: list[Any], timeout: float = 10) -> None:
        self.store = store
        self.base = base.rstrip("/")
        self.networks = networks
        self.timeout = timeout

    def key(self, username: str) -> tuple[str, str]:
        private, _ = accounts.keypair(self.store, username, datetime.now(UTC))
        return f"{actor_id(self.base, username)}#main-key", private

    def get(self, url: str, username: str) -> Bounded:
        """A stranger's document: bounded in size after decompression, and in time."""
        key_id, private = self.key(username)
        headers = sign("GET", url, None, key_id, private)
        headers["Accept"] = AP
        with guarded_client(self.networks, timeout=self.timeout, follow_redirects=True) as http:
            return bounded_get(
                http, url, max_bytes=MAX_DOCUMENT, seconds=self.timeout, headers=headers
            )

    def post(self, url: str, username: str, doc: dict[str, Any]) -> httpx.Response:
        key_id, private = self.key(username)
        body = json.dumps(doc, ensure_ascii=False).encode()
        headers = sign("POST", url, body, key_id, private)
        with guarded_client(self.networks, timeout=self.timeout, follow_redirects=False) as http:
            return http.post(url, content=body, headers=headers)

    def accept(self, username: str, follower: str, follow_id: str | None, inbox: str) -> None:
        """Tell a follower's server its Follow is accepted (raises httpx errors, or
        httpx.HTTPStatusError when the server refuses)."""
        follow = {"id": follow_id, "type": "Follow", "actor": follower,
                  "object": actor_id(self.base, username)}  # fmt: skip
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")
        doc = accept(
            self.base, username, follow, f"{actor_id(self.base, username)}#accepts/{stamp}"
        )
        self.post(inbox, username, doc).raise_for_status()
