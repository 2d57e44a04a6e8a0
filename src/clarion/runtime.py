"""Wiring for the long-running commands: the poll loop, the dispatcher and the web server."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from clarion.channels import channel_limits
from clarion.channels.base import Channel
from clarion.config import Config
from clarion.delivery.dispatcher import Dispatcher, worker_id
from clarion.net import guarded_client
from clarion.polling import (
    HostPacer,
    claim_source,
    due_sources,
    poll_source,
    release_source,
)
from clarion.sources import build_sources
from clarion.store import Store

log = logging.getLogger(__name__)


def settle() -> None:
    """Once a long-running process has loaded what it keeps for its life (modules, config,
    channels and their SDKs: ~150,000 objects), take it out of the cyclic garbage collector's
    view (`gc.freeze`): every full collection walked all of it again, a tenth of an ingest's
    time (`bench/run.py --only ingest`: 0.9 s of 7 s for 3,000 alerts; 0.05 s frozen)."""
    gc.collect()
    gc.freeze()


def make_dispatcher(store: Store, config: Config, channels: Mapping[str, Channel]) -> Dispatcher:
    from clarion import credentials
    from clarion.channels import build_channels

    def rebuild(name: str) -> Channel:
        stored = credentials.load(store, credentials.keyring(config))
        return build_channels(config, stored, only=name)[name]

    overrides: dict[str, tuple[int, float] | None] = {}
    for name, cfg in config.channels.items():
        limit = cfg.write_limit()
        if limit != "default":
            overrides[name] = limit
    return Dispatcher(
        store,
        channels,
        rebuild=rebuild,
        rate_limits=overrides,
        lease_seconds=config.clarion.lease_seconds,
        heartbeat_seconds=config.clarion.heartbeat_seconds,
        drop_expired=config.clarion.drop_expired,
        caps=channel_limits(config),
        in_flight={n: c.max_in_flight for n, c in config.channels.items() if c.max_in_flight},
        max_in_flight=config.clarion.max_in_flight,
    )


def poll_loop(
    store: Store, config: Config, channels: Mapping[str, Channel], stop: threading.Event
) -> None:
    sources = build_sources(config)
    if not sources:
        return
    worker = f"poller:{worker_id()}"
    with guarded_client(
        config.clarion.networks(),
        timeout=30,
        follow_redirects=True,
        headers={"User-Agent": config.clarion.user_agent},
    ) as http:
        pacer = HostPacer(config.clarion.per_host_gap)
        while not stop.is_set():
            for source in due_sources(store, sources, datetime.now(UTC)):
                url = getattr(source, "url", "")
                if stop.wait(pacer.delay(url, time.monotonic())):
                    return
                pacer.mark(url, time.monotonic())
                if not claim_source(store, source, worker, datetime.now(UTC)):
                    continue  # another worker is polling it, or just did
                try:
                    result = poll_source(store, config, channels, source, http)
                    if result and result.stored:
                        log.info(
                            "source %s: %d new notice(s), %d deliveries queued",
                            source.name,
                            len(result.stored),
                            result.deliveries,
                        )
                except Exception:
                    log.exception("source %s: poll crashed", source.name)
                finally:
                    release_source(store, source.name, worker)
            stop.wait(config.clarion.poll_interval_min / 3)


def schedule_loop(
    store: Store, config: Config, channels: Mapping[str, Channel], stop: threading.Event
) -> None:
    """Send desk notices scheduled for now (every worker runs this; each draft goes once)."""
    from clarion.desk.drafts import send_due

    while not stop.wait(config.desk.schedule_check):
        try:
            n = send_due(store, config, channels, datetime.now(UTC))
            if n:
                log.info("desk: %d scheduled notice(s) sent", n)
        except Exception:
            log.exception("desk: sending scheduled notices failed; trying again")


def start_background(
    store: Store, config: Config, channels: Mapping[str, Channel], stop: threading.Event
) -> None:
    """The threads every worker runs beside its dispatcher: source polling, desk schedule, and
    the static export when `[export]` names a target."""
    loops = [poll_loop, schedule_loop]
    if config.export.target:
        loops.append(export_loop)
    for target in loops:
        threading.Thread(
            target=target, args=(store, config, channels, stop), daemon=True, name=target.__name__
        ).start()


def export_loop(
    store: Store, config: Config, channels: Mapping[str, Channel], stop: threading.Event
) -> None:
    """Export the public surface at start, then whenever it changed (looked at every
    `[export] interval`). With several workers each exports: the result is the same files, and
    only what changed is written."""
    from clarion.export import export
    from clarion.store.changes import KINDS

    assert config.export.target is not None
    done: tuple[Any, ...] | None = None
    while not stop.is_set():
        now = store.changes.version(KINDS)
        if now != done:
            try:
                result = export(
                    store, config, config.export.target, endpoint_url=config.export.endpoint_url
                )
                log.info("export to %s: %s", config.export.target, result)
                done = now
            except Exception:
                log.exception("export to %s failed; trying again", config.export.target)
        stop.wait(config.export.interval)


SHUTDOWN_GRACE = 5  # seconds open requests may still take after SIGTERM


def build_channels_with_store(config: Config, store: Store) -> dict[str, Channel]:
    """The channels, with credentials entered in the desk standing in for the config's, and
    the fediverse account handed the store (raises ConfigError or CredentialError)."""
    from clarion import credentials
    from clarion.channels import build_channels
    from clarion.config import validate_all

    stored = credentials.load(store, credentials.keyring(config))
    validate_all(config, stored)
    built = build_channels(config, stored)
    for channel in built.values():  # the fediverse account keeps its followers there
        if hasattr(channel, "use_store"):
            channel.use_store(store)
    return built


def web_app_from_environment() -> Any:
    """The app of one `clarion web --workers N` process (uvicorn imports it by name in each):
    the config from `CLARION_CONFIG`, its own connections to the database."""
    from clarion.config import load_config
    from clarion.store import open_store
    from clarion.web.app import create_app

    config = load_config()
    store = open_store(config.clarion.database_url, upgrade=False)  # the parent migrated
    return create_app(store, config, build_channels_with_store(config, store))


def serve_web(
    store: Store,
    config: Config,
    host: str,
    port: int,
    channels: Mapping[str, Channel] | None = None,
    workers: int = 1,
) -> None:
    import uvicorn

    from clarion.web.app import create_app

    if workers > 1:
        # Several processes share the port; each builds its own app (and snapshot of the public
        # pages, kept current through the database: see clarion.store.changes).
        uvicorn.run(
            "clarion.runtime:web_app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )
        return

    # On SIGTERM uvicorn waits for open requests; the live streams (the desk's, the API's
    # /stream) never end by themselves, so shutdown waits for them a few seconds at most.
    uvicorn.run(
        create_app(store, config, channels),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
    )
