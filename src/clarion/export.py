"""`clarion export TARGET`: the whole public surface as static files, so the page and feeds
survive when the Clarion server does not (behind any web server, CDN or object store).

What is exported (`public_urls`): the page `/`, each source's page, each notice's page and its
CAP documents (the latest and every version), every feed (all, per source, CAP index),
`/robots.txt`, `/sitemap.xml` and `/favicon.ico`; and of each fediverse account (an
`activitypub` channel) what is the same for every reader: its outbox, followers and following
collections, each Note it posted, and NodeInfo. Not the actor document itself (`/ap/NAME`
answers a browser and a server differently) nor WebFinger (answered by query): a static copy
can be read, not followed. Each is asked of the app itself, in this
process, exactly as a reader would ask the server, so the files are the server's bytes.

Targets:

- a directory: each URL is a file at its path; a page whose URL is also a folder (`/`,
  `/notices/7`, `/sources/nws`) is that folder's `index.html`. A web server serves the tree with
  `try_files $uri $uri/index.html` (docs/deploy.md). Files whose bytes did not change are not
  rewritten; files of an earlier export no longer listed are removed.
- `s3://bucket/prefix`: any S3-compatible store (boto3; `AWS_ENDPOINT_URL` and the usual AWS
  variables, or `[export] endpoint_url`). Each URL is the key of its path (`notices/7`, with its
  content type), so links work unchanged on the store's website endpoint. Only what changed is
  uploaded (compared by MD5 with what the store holds); keys of an earlier export no longer
  listed are deleted. Nothing else under the prefix is touched.

A manifest (`.clarion-export.json`: URL → file, SHA-256, content type) is written last.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from clarion.config import Config
from clarion.store import Store
from clarion.store.schema import notices

MANIFEST = ".clarion-export.json"
FEEDS = ("atom", "rss", "json")


@dataclass
class Exported:
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.written} written, {self.unchanged} unchanged, {self.removed} removed" + (
            f", {len(self.failed)} failed: {', '.join(self.failed[:5])}" if self.failed else ""
        )


def public_urls(store: Store, config: Config | None = None) -> list[str]:
    """Every URL of the public surface, in a stable order."""
    urls = ["/", "/robots.txt", "/sitemap.xml", "/favicon.ico", "/feeds/cap.atom"]
    urls += [f"/feeds/all.{f}" for f in FEEDS]
    with store.read() as conn:
        sources = sorted({r.source for r in conn.execute(select(notices.c.source).distinct())})
        versions = conn.execute(
            select(notices.c.thread_id, notices.c.version).order_by(
                notices.c.thread_id, notices.c.version
            )
        ).all()
    for s in sources:
        urls.append(f"/sources/{s}")
        urls += [f"/feeds/source/{s}.{f}" for f in FEEDS]
        urls.append(f"/feeds/source/{s}/cap.atom")
    seen: set[int] = set()
    for thread_id, version in versions:
        if thread_id not in seen:
            seen.add(thread_id)
            urls += [f"/notices/{thread_id}", f"/notices/{thread_id}.cap"]
        urls.append(f"/notices/{thread_id}/v{version}.cap")
    urls += _cards(store)
    urls += _fediverse_urls(store, config) if config is not None else []
    return urls


def _cards(store: Store) -> list[str]:
    """The alert cards of the notices whose newest version has shapes to draw (their pages
    name them for link previews)."""
    from clarion.render.shapes import rings_of
    from clarion.store.schema import threads

    out = []
    with store.read() as conn:
        for r in conn.execute(
            select(threads.c.id, notices.c.data)
            .select_from(threads.join(notices, notices.c.id == threads.c.latest_notice_id))
            .order_by(threads.c.id)
        ):
            infos = r.data.get("infos") or []
            if infos and rings_of(infos[0].get("areas") or []):
                out.append(f"/notices/{r.id}/card.png")
    return out


def _fediverse_urls(store: Store, config: Config) -> list[str]:
    from clarion.channels.activitypub import ActivityPubChannelConfig
    from clarion.store.schema import deliveries

    accounts = {
        name: c.username
        for name, c in config.channels.items()
        if isinstance(c, ActivityPubChannelConfig) and c.enabled
    }
    if not accounts or not config.clarion.public_url:
        return []
    urls = ["/.well-known/nodeinfo", "/nodeinfo/2.1"]
    with store.read() as conn:
        for channel, username in sorted(accounts.items()):
            urls += [f"/ap/{username}/{c}" for c in ("outbox", "followers", "following")]
            posted = conn.execute(
                select(deliveries.c.thread_id)
                .where(deliveries.c.channel == channel, deliveries.c.state == "sent")
                .distinct()
                .order_by(deliveries.c.thread_id)
            )
            urls += [f"/ap/{username}/notes/{r.thread_id}" for r in posted]
    return urls


def file_for(url: str) -> str:
    """Where a URL's bytes go in a directory export."""
    path = url.lstrip("/")
    if not path:
        return "index.html"
    if path.startswith("ap/") or path == "nodeinfo/2.1":
        return path + ".json"  # JSON documents, served as such by any web server
    if path.startswith(("notices/", "sources/")) and "." not in path.rsplit("/", 1)[-1]:
        return f"{path}/index.html"  # a page whose URL is also a folder (its CAP versions)
    return path


def key_for(url: str) -> str:
    """Where a URL's bytes go in an object store: its own path (keys are flat)."""
    return url.lstrip("/") or "index.html"


@dataclass(frozen=True)
class Page:
    url: str
    status: int
    content_type: str
    body: bytes


def fetch_all(app: Any, urls: list[str], host: str) -> list[Page]:
    """Ask the app for each URL, in this process, as a reader's GET would."""

    async def one(url: str) -> Page:
        parts = urlsplit(url)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "https",
            "path": parts.path,
            "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": [(b"host", host.encode()), (b"user-agent", b"clarion-export")],
            "client": ("127.0.0.1", 0),
            "server": (host, 443),
        }
        status, headers, chunks = 0, {}, []
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)  # nobody disconnects
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = {bytes(k).lower(): bytes(v) for k, v in message.get("headers", [])}
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        ctype = headers.get(b"content-type", b"application/octet-stream").decode("latin-1")
        return Page(url, status, ctype, b"".join(chunks))

    async def every() -> list[Page]:
        return [await one(u) for u in urls]

    return asyncio.run(every())


def export(
    store: Store,
    config: Config,
    target: str,
    *,
    endpoint_url: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Exported:
    """Export the public surface to a directory or `s3://bucket/prefix` (see the module)."""
    from clarion.web.app import create_app

    base = config.clarion.public_url or f"http://{config.clarion.host}:{config.clarion.port}"
    host = urlsplit(base).netloc
    app = create_app(store, config)
    urls = public_urls(store, config)
    if progress:
        progress(f"exporting {len(urls)} URLs to {target}")
    pages = fetch_all(app, urls, host)
    result = Exported()
    good = []
    for page in pages:
        if page.status == 200:
            good.append(page)
        else:
            result.failed.append(f"{page.url} ({page.status})")
    if target.startswith("s3://"):
        _to_s3(good, target, endpoint_url, result)
    else:
        _to_directory(good, Path(target), result)
    return result


def _manifest(pages: list[Page], where: Callable[[str], str]) -> dict[str, Any]:
    return {
        p.url: {
            "file": where(p.url),
            "sha256": hashlib.sha256(p.body).hexdigest(),
            "content_type": p.content_type,
        }
        for p in pages
    }


def _to_directory(pages: list[Page], root: Path, result: Exported) -> None:
    root.mkdir(parents=True, exist_ok=True)
    old: dict[str, Any] = {}
    with_manifest = root / MANIFEST
    if with_manifest.exists():
        old = json.loads(with_manifest.read_text())
    for page in pages:
        path = root / file_for(page.url)
        if path.exists() and path.read_bytes() == page.body:
            result.unchanged += 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(page.body)
        os.replace(tmp, path)  # a reader never sees half a file
        result.written += 1
    new = _manifest(pages, file_for)
    for url, item in old.items():
        if url not in new:
            gone = root / item["file"]
            if gone.exists():
                gone.unlink()
                result.removed += 1
    tmp = with_manifest.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps(new, indent=1, sort_keys=True))
    os.replace(tmp, with_manifest)


def _to_s3(pages: list[Page], target: str, endpoint_url: str | None, result: Exported) -> None:
    try:
        import boto3
    except ImportError:  # pragma: no cover - an install without the extra
        raise RuntimeError("exporting to S3 needs boto3: pip install 'clarion[s3]'") from None
    bucket, _, prefix = target.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    s3 = boto3.client("s3", endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))

    def key(name: str) -> str:
        return f"{prefix}/{name}" if prefix else name

    held: dict[str, str] = {}  # key → the store's ETag (the MD5 of a single-part upload)
    paginator = s3.get_paginator("list_objects_v2")
    for part in paginator.paginate(Bucket=bucket, Prefix=key("") if prefix else ""):
        for obj in part.get("Contents", []):
            held[obj["Key"]] = obj["ETag"].strip('"')
    old: dict[str, Any] = {}
    if key(MANIFEST) in held:
        body = s3.get_object(Bucket=bucket, Key=key(MANIFEST))["Body"].read()
        old = json.loads(body)
    for page in pages:
        k = key(key_for(page.url))
        if held.get(k) == hashlib.md5(page.body, usedforsecurity=False).hexdigest():
            result.unchanged += 1
            continue
        s3.put_object(Bucket=bucket, Key=k, Body=page.body, ContentType=page.content_type)
        result.written += 1
    new = _manifest(pages, key_for)
    for url, item in old.items():
        if url not in new and key(item["file"]) in held:
            s3.delete_object(Bucket=bucket, Key=key(item["file"]))
            result.removed += 1
    s3.put_object(
        Bucket=bucket,
        Key=key(MANIFEST),
        Body=json.dumps(new, indent=1, sort_keys=True).encode(),
        ContentType="application/json",
    )
