"""`clarion rehearse`: play time-stamped snapshots of sources through the real pipeline.

A scenario is a folder with a `scenario.toml`:

    [sources.nws]                      # exactly as in clarion.toml; the url may be left out
    kind = "nws"
    user_agent = "rehearsal (ops@example.org)"

    [[step]]
    at = "2026-11-29T07:00:00Z"        # the simulated clock for this step
    source = "nws"
    file = "snapshots/0700.json"       # what the source's URL answers at that time…
    # status = 304                     # …or an HTTP status instead (304, 404, 500…)
    # urls = { "https://example.org/a.cap" = "docs/a.cap" }   # other URLs (an index's documents)

    [channels.mastodon]                # optional, as in clarion.toml (credentials unused)
    [[routes]]                         # optional, as in clarion.toml

Each step is one poll of its source by the real poller (conditional GET included: a file
identical to the one served before answers 304, as a real server would), on a throwaway SQLite
database, with the real ingest (parse, store, route, render, enqueue) and the real dispatcher,
the clock set to the step's time. Every channel is replaced by a recorder that renders as the
real platform would and sends nothing. A push source's step hands its file to the push parser,
as `/hooks/NAME` would once the signature checked out.

What each channel would receive (or why not) comes out as `Event`s: the CLI prints them as a
timeline, or as one JSON object per line with `--json`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from sqlalchemy import select

from clarion.channels.base import Channel, Outgoing, Profile, Receipt, RenderContext, Rendered
from clarion.config import Config, ConfigError, _format_errors
from clarion.model import MsgType, Notice
from clarion.sources.push import PushSourceConfig

PLACEHOLDER_HOST = "https://rehearsal.invalid"


class ScenarioError(Exception):
    """A scenario that cannot be played: the message names the file and the key."""


@dataclass(frozen=True)
class Step:
    at: datetime
    source: str
    file: Path | None
    status: int | None
    urls: dict[str, Path]


@dataclass
class Event:
    """One thing a channel would receive, or would not and why (`action` = "skip")."""

    at: str
    source: str
    channel: str
    action: str  # post | reply | edit | delete | skip
    identifier: str
    thread: str | None  # the story's key ("SOURCE/KEY"), as stored
    version: int | None
    text: str | None
    reason: str | None = None
    reply_to: str | None = None  # the identifier of the message whose post this replies under

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Summary:
    steps: int = 0
    events: list[Event] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.events:
            out[e.action] = out.get(e.action, 0) + 1
        return out

    def skipped_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.events:
            if e.action == "skip":
                key = _reason_class(e.reason or "")
                out[key] = out.get(key, 0) + 1
        return out


def _reason_class(reason: str) -> str:
    """The reason without its particulars (times, ids), for the summary's counts."""
    for prefix in ("over at", "rejected", "late", "older than", "superseded", "nothing was posted"):
        if reason.startswith(prefix):
            return prefix
    return reason.split(":")[0][:60]


def payload_text(payload: dict[str, Any]) -> str | None:
    """The words a rendered payload would post, whatever the platform's payload shape."""
    if isinstance(payload.get("text"), str):
        parts = [payload["text"], *(p.get("text", "") for p in payload.get("thread") or [])]
        return "\n---\n".join(parts)
    platforms = payload.get("platforms")
    if isinstance(platforms, dict) and platforms:
        first = platforms.get("mastodon") or next(iter(platforms.values()))
        return str(first.get("text"))
    data = payload.get("data")
    if isinstance(data, dict):
        return str(payload.get("type", "")) + " " + str(data.get("identifier", ""))
    return None


class Recorder:
    """A channel that renders as `inner` (the real platform's channel, with placeholder
    credentials) and records instead of sending."""

    def __init__(self, name: str, inner: Channel, events: list[Event], cfg: Any) -> None:
        self.name = name
        self.kind = inner.kind
        self.inner = inner
        self.events = events
        self.cfg = cfg
        self.step: Step | None = None
        self.posted: dict[str, str] = {}  # receipt post id → the identifier it posted
        base = inner.profile
        # Every recorder deduplicates (it sends nothing), threads and never rate-limits.
        self.profile = Profile(
            limit=base.limit,
            counting=base.counting,
            threads=True,
            edit=base.edit,
            delete=base.delete,
            idempotency=True,
            rate_limit=None,
            cost_per_post=base.cost_per_post,
        )

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        return self.inner.render(notice, ctx)

    def use_store(self, store: Any) -> None:
        """The dispatcher hands over its store: the recorder reads each delivery's story."""
        self._store = store
        if hasattr(self.inner, "use_store"):
            self.inner.use_store(store)

    def _story_of(self, delivery_id: str) -> str | None:
        from clarion.store.schema import deliveries, threads

        store = getattr(self, "_store", None)
        if store is None:
            return None
        with store.read() as conn:
            key = conn.execute(
                select(threads.c.thread_key)
                .select_from(deliveries.join(threads, threads.c.id == deliveries.c.thread_id))
                .where(deliveries.c.id == delivery_id)
            ).scalar()
        return str(key) if key is not None else None

    def send(self, out: Outgoing) -> Receipt:
        assert self.step is not None
        notice = out.notice
        action = "post" if out.previous is None else "reply"
        if out.previous is not None:
            if notice.msg_type is MsgType.UPDATE and getattr(self.cfg, "edit_on_update", False):
                action = "edit"
            on_cancel = getattr(self.cfg, "on_cancel", "reply")
            if notice.msg_type.closes and on_cancel in ("delete", "reply_and_delete"):
                action = "delete"
        self.events.append(
            Event(
                at=_iso(self.step.at),
                source=notice.source,
                channel=self.name,
                action=action,
                identifier=notice.identifier,
                thread=self._story_of(out.id),
                version=notice.version,
                text=payload_text(out.payload),
                reply_to=self.posted.get(out.previous.post_id) if out.previous else None,
            )
        )
        post_id = f"rehearsal:{out.id}"
        self.posted[post_id] = notice.identifier
        return Receipt(post_id=post_id, url=None)

    def close(self) -> None:
        self.inner.close()


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_scenario(folder: Path) -> tuple[dict[str, Any], list[Step]]:
    """The scenario's config (as clarion.toml would hold it) and its steps, checked."""
    path = folder / "scenario.toml"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(
            f"{path}: no such file (a scenario is a folder with scenario.toml)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML ({exc})") from None
    steps_raw = raw.pop("step", None)
    if not isinstance(steps_raw, list) or not steps_raw:
        raise ScenarioError(f"{path}: no [[step]] (each is one poll: at, source, file or status)")
    sources = raw.get("sources") or {}
    if not isinstance(sources, dict) or not sources:
        raise ScenarioError(f"{path}: no [sources.NAME]")
    for name, src in sources.items():
        if isinstance(src, dict) and src.get("kind") != "push":
            src.setdefault("url", f"{PLACEHOLDER_HOST}/{name}")
        if isinstance(src, dict) and src.get("kind") == "push":
            src.setdefault("secret", {"env": "CLARION_REHEARSAL_UNUSED"})
    steps = []
    for i, s in enumerate(steps_raw):
        where = f"{path}: step[{i}]"
        if not isinstance(s, dict):
            raise ScenarioError(f"{where}: not a table")
        unknown = set(s) - {"at", "source", "file", "status", "urls"}
        if unknown:
            raise ScenarioError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        at = s.get("at")
        if isinstance(at, str):
            try:
                at = datetime.fromisoformat(at.replace("Z", "+00:00"))
            except ValueError:
                raise ScenarioError(f"{where}.at: {s.get('at')!r} is not a date-time") from None
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise ScenarioError(f"{where}.at: a date-time with its offset, e.g. 2026-11-29T07:00Z")
        source = s.get("source")
        if source not in sources:
            raise ScenarioError(f"{where}.source: no source named {source!r} in [sources]")
        file = s.get("file")
        status = s.get("status")
        if (file is None) == (status is None):
            raise ScenarioError(f"{where}: give either file or status")
        if status is not None and (not isinstance(status, int) or not 200 <= status <= 599):
            raise ScenarioError(f"{where}.status: an HTTP status, e.g. 304, 404 or 500")
        fpath = None
        if file is not None:
            fpath = folder / str(file)
            if not fpath.is_file():
                raise ScenarioError(f"{where}.file: {fpath} does not exist")
        urls = {}
        for url, f in (s.get("urls") or {}).items():
            p = folder / str(f)
            if not p.is_file():
                raise ScenarioError(f"{where}.urls: {p} does not exist")
            urls[str(url)] = p
        steps.append(Step(at.astimezone(UTC), str(source), fpath, status, urls))
    if any(b.at < a.at for a, b in itertools.pairwise(steps)):
        raise ScenarioError(f"{path}: steps must be in time order")
    return raw, steps


def _channels(config: Any, events: list[Event]) -> dict[str, Channel]:
    from clarion import registry
    from clarion.channels.preview import PreviewChannel

    connectors = registry.channels()
    out: dict[str, Channel] = {}
    for name, cfg in config.channels.items():
        if not cfg.enabled:
            continue
        offline = connectors[cfg.kind].offline
        inner: Channel
        if offline is not None:
            inner = offline(getattr(cfg, "thread_parts", 1))
        else:  # preview, activitypub: the preview's rendering stands in
            inner = PreviewChannel(name, tuple(cfg.languages or config.clarion.languages))
        out[name] = Recorder(name, inner, events, cfg)
    return out


class _Server:
    """What every URL answers at the current step, with ETags as a real server sends them."""

    def __init__(self) -> None:
        self.step: Step | None = None
        self.url: str = ""

    def handle(self, request: httpx.Request) -> httpx.Response:
        step = self.step
        assert step is not None
        url = str(request.url)
        if url.split("?")[0] == self.url.split("?")[0]:
            if step.status is not None:
                return httpx.Response(step.status)
            assert step.file is not None
            return self._file(request, step.file)
        for known, path in step.urls.items():
            if url == known:
                return self._file(request, path)
        return httpx.Response(404)

    @staticmethod
    def _file(request: httpx.Request, path: Path) -> httpx.Response:
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if request.headers.get("if-none-match") == etag:
            return httpx.Response(304, headers={"etag": etag})
        ctype = {
            ".json": "application/json",
            ".xml": "application/xml",
            ".cap": "application/cap+xml",
            ".atom": "application/atom+xml",
            ".rss": "application/rss+xml",
            ".pb": "application/x-protobuf",
        }.get(path.suffix, "application/octet-stream")
        return httpx.Response(200, content=body, headers={"etag": etag, "content-type": ctype})


def rehearse(folder: Path) -> Iterator[tuple[Step, list[Event]]]:
    """Play the scenario; yield each step with what the channels did (and skipped) at it."""
    from clarion.delivery.dispatcher import Dispatcher
    from clarion.pipeline import ingest
    from clarion.polling import poll_source
    from clarion.sources import build_sources
    from clarion.sources.push import parse_push
    from clarion.store import open_store
    from clarion.store.schema import deliveries, notices
    from clarion.store.schema import sources as sources_table

    raw, steps = load_scenario(folder)
    with tempfile.TemporaryDirectory(prefix="clarion-rehearsal-") as tmp:
        raw.setdefault("clarion", {})
        if not isinstance(raw["clarion"], dict):
            raise ScenarioError(f"{folder / 'scenario.toml'}: [clarion] must be a table")
        raw["clarion"]["database_url"] = f"sqlite:///{tmp}/rehearsal.db"
        if not raw.get("channels"):
            raw["channels"] = {"preview": {"kind": "preview"}}
            raw.setdefault("routes", [{"channels": ["preview"]}])
        try:
            config = Config.model_validate(raw)
        except ValidationError as exc:
            raise ScenarioError(
                f"{folder / 'scenario.toml'}: " + "; ".join(_format_errors(exc))
            ) from None
        except ConfigError as exc:
            raise ScenarioError(f"{folder / 'scenario.toml'}: {exc}") from None
        events: list[Event] = []
        channels = _channels(config, events)
        store = open_store(config.clarion.database_url)
        polled = build_sources(config)
        server = _Server()
        http = httpx.Client(transport=httpx.MockTransport(server.handle))
        clock = {"now": steps[0].at}
        dispatcher = Dispatcher(
            store,
            channels,
            worker="rehearsal",
            drop_expired=config.clarion.drop_expired,
            clock=lambda: clock["now"],
        )
        reported: set[str] = set()
        try:
            for step in steps:
                clock["now"] = step.at
                for ch in channels.values():
                    assert isinstance(ch, Recorder)
                    ch.step = step
                start = len(events)
                cfg = config.sources[step.source]
                if isinstance(cfg, PushSourceConfig):
                    assert step.file is not None
                    body = step.file.read_bytes()
                    pushed = parse_push(body, "", source=step.source, what=f"push to {step.source}")
                    result = ingest(
                        store, config, channels, pushed, source=step.source, now=step.at
                    )
                else:
                    source = polled[step.source]
                    server.step, server.url = step, source.url
                    with store.write() as conn:  # every step is due: the scenario is the clock
                        conn.execute(
                            sources_table.update()
                            .where(sources_table.c.name == step.source)
                            .values(next_poll_at=None)
                        )
                    r = poll_source(store, config, channels, source, http, now=step.at)
                    if r is None:
                        with store.read() as conn:
                            err = conn.execute(
                                select(sources_table.c.last_error).where(
                                    sources_table.c.name == step.source
                                )
                            ).scalar_one()
                        events.append(
                            Event(
                                _iso(step.at),
                                step.source,
                                "-",
                                "skip",
                                "-",
                                None,
                                None,
                                None,
                                f"poll failed: {err}",
                            )
                        )
                        yield step, events[start:]
                        continue
                    result = r
                for ident, why in result.skipped:
                    events.append(
                        Event(_iso(step.at), step.source, "-", "skip", ident, None, None, None, why)
                    )
                dispatcher.run_until_idle()
                events.extend(_dropped(store, step, reported, deliveries, notices))
                events.extend(_rejections(store, step))
                yield step, events[start:]
        finally:
            http.close()
            for ch in channels.values():
                ch.close()
            store.close()


def _dropped(
    store: Any, step: Step, reported: set[str], deliveries: Any, notices: Any
) -> list[Event]:
    """Deliveries that will never go out, with why (nothing to cancel, over, superseded)."""
    from clarion.store.schema import delivery_events, threads

    out = []
    with store.read() as conn:
        rows = conn.execute(
            select(
                deliveries.c.id,
                deliveries.c.channel,
                threads.c.thread_key,
                deliveries.c.version,
                deliveries.c.state,
                notices.c.identifier,
                notices.c.source,
            )
            .select_from(
                deliveries.join(notices, notices.c.id == deliveries.c.notice_id).join(
                    threads, threads.c.id == deliveries.c.thread_id
                )
            )
            .where(deliveries.c.state.in_(("cancelled", "superseded", "failed")))
        ).all()
        for r in rows:
            if r.id in reported:
                continue
            reported.add(r.id)
            detail = conn.execute(
                select(delivery_events.c.detail)
                .where(delivery_events.c.delivery_id == r.id)
                .order_by(delivery_events.c.id.desc())
                .limit(1)
            ).scalar()
            out.append(
                Event(
                    _iso(step.at),
                    r.source,
                    r.channel,
                    "skip",
                    r.identifier,
                    str(r.thread_key),
                    int(r.version),
                    None,
                    detail or r.state,
                )
            )
    return out


def _rejections(store: Any, step: Step) -> list[Event]:
    from clarion.store.schema import rejected_items

    with store.read() as conn:
        rows = conn.execute(
            select(rejected_items).where(
                rejected_items.c.source == step.source, rejected_items.c.last_at == step.at
            )
        ).all()
    return [
        Event(
            _iso(step.at),
            r.source,
            "-",
            "skip",
            r.item,
            None,
            None,
            None,
            f"rejected ({r.reason}): {r.detail}",
        )
        for r in rows
    ]


_SUFFIXES = {"json": ".json", "atom": ".atom", "rss": ".rss", "cap": ".cap", "protobuf": ".pb"}


def _suffix(content_type: str, url: str) -> str:
    for word, suffix in _SUFFIXES.items():
        if word in content_type:
            return suffix
    tail = url.split("?")[0].rsplit("/", 1)[-1]
    return "." + tail.rsplit(".", 1)[1] if "." in tail else ".xml"


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def record_snapshot(
    folder: Path,
    name: str,
    cfg: Any,
    url: str,
    answers: dict[str, tuple[bytes, str]],
    now: datetime,
) -> Path:
    """Save what a source answered (`clarion sources test NAME --save DIR`) as one step of the
    scenario in `folder`, creating its scenario.toml with the source's config the first time."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    scenario = folder / "scenario.toml"
    if not scenario.exists():
        data = cfg.model_dump(mode="json", exclude_defaults=True)
        data["kind"] = cfg.kind
        lines = [f"[sources.{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in data.items()]
        scenario.write_text("\n".join(lines) + "\n")
    main = next((u for u in answers if u.split("?")[0] == url.split("?")[0]), None)
    step = ["", "[[step]]", f'at = "{_iso(now)}"', f'source = "{name}"']
    if main is None:
        step.append("status = 304")
        path = scenario
    else:
        body, ctype = answers[main]
        path = folder / f"{name}-{stamp}{_suffix(ctype, main)}"
        path.write_bytes(body)
        step.append(f'file = "{path.name}"')
    others = [u for u in answers if u != main]
    if others:
        pairs = []
        for i, u in enumerate(others, 1):
            body, ctype = answers[u]
            doc = folder / f"{name}-{stamp}-{i}{_suffix(ctype, u)}"
            doc.write_bytes(body)
            pairs.append(f"{json.dumps(u)} = {json.dumps(doc.name)}")
        step.append("urls = { " + ", ".join(pairs) + " }")
    with scenario.open("a") as f:
        f.write("\n".join(step) + "\n")
    return path
