"""`clarion demo`: real samples through the real pipeline into the preview channel, then serve.

Works offline: it reads only the files bundled beside this module.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from clarion.channels.activitypub import ActivityPubChannelConfig
from clarion.channels.preview import PreviewChannelConfig
from clarion.config import Config, RouteRule, Settings
from clarion.model import Status

DATA = Path(__file__).parent

STEPS = [
    ("01-nws-flash-flood-watch.cap", "cap", "nws-great-falls", "An NWS Flash Flood Watch"),
    ("02-nws-flash-flood-watch-update.cap", "cap", "nws-great-falls", "…its Update"),
    ("03-nws-flash-flood-watch-cancel.cap", "cap", "nws-great-falls", "…and its Cancel"),
    ("04-amber-alert.atom", "cap", "amber-alerts", "An Amber Alert (CAP inside Atom)"),
    ("05-wordpress-news.rss", "feed", "wordpress-news", "A WordPress blog post"),
]


def demo_config(db: Path) -> Config:
    from clarion.channels.webpush import WebPushChannelConfig
    from clarion.configtypes import SecretRef
    from clarion.subscriptions.webpush import new_private_key

    port = int(os.environ.get("CLARION_PORT", "8080"))
    vapid = db.with_name(db.name + ".vapid-key")  # the demo's own push identity, made once
    if not vapid.exists():
        vapid.write_text(new_private_key())
        vapid.chmod(0o600)
    return Config(
        clarion=Settings(
            database_url=f"sqlite:///{db}",
            port=port,
            public_url=f"http://127.0.0.1:{port}",
            publisher_name="Clarion demo",
            drop_expired=False,
        ),
        channels={
            "preview": PreviewChannelConfig(kind="preview", statuses=[Status.ACTUAL, Status.TEST]),
            # The publisher's own fediverse account, served by Clarion itself: on a public
            # address, people follow @alerts@your-host from Mastodon with no platform between.
            "fediverse": ActivityPubChannelConfig(
                kind="activitypub",
                username="alerts",
                summary="Alerts from the Clarion demo, straight from the publisher.",
            ),
            # People subscribe at /subscribe to notifications in their browser (this needs
            # the browser's own push service, on the internet).
            "push": WebPushChannelConfig(
                kind="webpush",
                vapid_private_key=SecretRef(file=vapid),
                subject="mailto:demo@clarion.invalid",
            ),
        },
        routes=[RouteRule(name="everything", channels=["preview", "fediverse", "push"])],
    )


def run_demo(db: Path, *, serve: bool = True, echo: Callable[[str], None] = print) -> Config:
    from clarion.channels import build_channels
    from clarion.delivery.dispatcher import Dispatcher
    from clarion.pipeline import ingest
    from clarion.sources import parsers
    from clarion.store import open_store

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    config = demo_config(db)
    store = open_store(config.clarion.database_url)
    channels = build_channels(config)
    dispatcher = Dispatcher(store, channels, drop_expired=False)
    echo(
        f"Clarion demo: replaying real samples into {db} (preview channel: nothing leaves "
        "this machine)\n"
    )
    for filename, kind, source, what in STEPS:
        notices = parsers()[kind]((DATA / filename).read_bytes(), "")
        if kind == "feed":
            notices = sorted(notices, key=lambda n: n.sent)[-1:]  # a blog's newest post
        result = ingest(store, config, channels, notices, source=source, include_expired=True)
        dispatcher.run_until_idle()
        echo(
            f"== {what} ({filename}): {len(result.stored)} notice(s), "
            f"{result.deliveries} delivery(ies)"
        )
        _show_previews(store, result.stored, echo)
    base = f"http://127.0.0.1:{config.clarion.port}"
    password = _desk_users(store)
    if serve:
        import threading

        from clarion.runtime import schedule_loop, serve_web

        # What the desk sends goes out too: the dispatcher and the desk's scheduler run here.
        stop = threading.Event()
        threading.Thread(target=dispatcher.run_forever, args=(stop,), daemon=True).start()
        threading.Thread(
            target=schedule_loop, args=(store, config, channels, stop), daemon=True
        ).start()
        echo(
            f"\nServing (Ctrl-C to stop):\n"
            f"  the public page      {base}/\n"
            f"  a notice and its map {base}/notices/1  (as CAP 1.2: {base}/notices/1.cap)\n"
            f"  feeds                {base}/feeds/all.atom  .rss  .json  {base}/feeds/cap.atom\n"
            f"  the API              {base}/api/v1/notices  (reference: {base}/api/docs)\n"
            f"  metrics              {base}/metrics\n"
            f"  subscribe            {base}/subscribe  (notifications in your browser)\n"
            f"  fediverse account    @alerts@127.0.0.1:{config.clarion.port}  "
            f"(actor {base}/ap/alerts, WebFinger {base}/.well-known/webfinger)\n"
            f"  the operator's desk  {base}/desk  (log in as demo-editor to write a notice and "
            f"as demo-approver to approve it; password for both: {password})"
        )
        try:
            serve_web(store, config, "127.0.0.1", config.clarion.port, channels)
        finally:
            stop.set()
    return config


def _desk_users(store: object) -> str:
    """Two desk accounts, so the demo shows two-person approval; a fresh password each run."""
    import secrets
    from datetime import UTC, datetime

    from clarion.desk.accounts import add_user
    from clarion.store import Store

    assert isinstance(store, Store)
    password = secrets.token_urlsafe(9)
    for name, role in (("demo-editor", "editor"), ("demo-approver", "approver")):
        add_user(store, name, password, role, datetime.now(UTC), by="demo")
    return password


def _show_previews(store: object, notice_ids: list[int], echo: Callable[[str], None]) -> None:
    from sqlalchemy import select

    from clarion.store import Store
    from clarion.store.schema import deliveries

    assert isinstance(store, Store)
    with store.read() as conn:
        rows = conn.execute(
            select(deliveries.c.payload, deliveries.c.state).where(
                deliveries.c.notice_id.in_(notice_ids), deliveries.c.channel == "preview"
            )
        ).all()
    for row in rows:
        mastodon = row.payload["platforms"]["mastodon"]
        counts = ", ".join(
            f"{p} {v['count']}/{v['limit']}" for p, v in row.payload["platforms"].items()
        )
        echo(f"   [{row.state}] {counts}")
        first = mastodon["text"].splitlines()[0]
        echo(f"   {first[:110]}")
