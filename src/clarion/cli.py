"""The `clarion` command."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clarion import registry
from clarion.config import EXAMPLE_CONFIG, Config, ConfigError, config_path, load_config

if TYPE_CHECKING:
    from clarion.model import Notice
    from clarion.status import ChannelHealth

app = typer.Typer(
    help="Clarion relays public information (alerts, service changes, posts) to every channel "
    "at once, durably. Start with `clarion demo`, then `clarion init` and `clarion check`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
channel_app = typer.Typer(
    help="Channels: `clarion channels` lists them with state, usage and spend; "
    "`clarion channels resume NAME` after fixing a credential.",
    invoke_without_command=True,
)
app.add_typer(db_app, name="db")
app.add_typer(channel_app, name="channels")
sources_app = typer.Typer(
    help="Sources: `clarion sources` lists them with their health; `clarion sources test NAME` "
    "fetches one once and shows what would be ingested.",
    invoke_without_command=True,
)
app.add_typer(sources_app, name="sources")
keys_app = typer.Typer(
    help="API keys: create (the token is shown once), list, revoke.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
fediverse_app = typer.Typer(
    help="Clarion's own fediverse accounts (activitypub channels): followers, approve, reject.",
    no_args_is_help=True,
)
app.add_typer(fediverse_app, name="fediverse")
users_app = typer.Typer(
    help="Desk users: add, list, disable, enable, passwd. Roles: viewer, editor, approver, admin.",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")

# The lists in help texts come from the registry (a connector added there is listed here).
KIND_HELP = "Parser: " + ", ".join(registry.SOURCE_KINDS + tuple(registry._extra_sources)) + "."


def _platform_help() -> str:
    return ", ".join(registry.previewable())


def _threadable_help() -> str:
    return ", ".join(registry.threadable())


ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config", "-c", help="Config file (default: $CLARION_CONFIG or ./clarion.toml)."
    ),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _config(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise _fail(f"clarion: {exc}", 2) from None


def _setup_logging(verbose: bool = False) -> None:
    from clarion.logs import setup

    try:
        setup(verbose)
    except ValueError as exc:
        raise _fail(f"clarion: {exc}", 2) from None


def _store(config: Config, upgrade: bool = True):  # type: ignore[no-untyped-def]
    from clarion.store import open_store

    return open_store(config.clarion.database_url, upgrade=upgrade)


def _record_config(store, config: Config) -> None:  # type: ignore[no-untyped-def]
    """A long-running command notes its configuration; a change goes to the audit log."""
    import socket

    from clarion.desk.audit import config_changed

    summary = config_changed(
        store, config, datetime.now(UTC), actor=_cli_actor(), host=socket.gethostname()
    )
    if summary:
        logging.getLogger("clarion").info("configuration: %s", summary)


def _channels(config: Config, store=None):  # type: ignore[no-untyped-def]
    """The channels, built; every secret (sources' too) is checked first. With the store,
    credentials entered in the desk (decrypted with `secret_keys`) stand in for the config's."""
    from clarion import credentials
    from clarion.channels import build_channels
    from clarion.config import validate_all
    from clarion.runtime import build_channels_with_store

    try:
        if store is not None:
            return build_channels_with_store(config, store)
        validate_all(config, {})
        return build_channels(config, {})
    except ConfigError as exc:
        raise _fail(f"clarion: {exc}", 2) from None
    except credentials.CredentialError as exc:
        raise _fail(f"clarion: {exc}", 2) from None


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the example config.")] = Path(
        "clarion.toml"
    ),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented example clarion.toml to start from."""
    if path.exists() and not force:
        raise _fail(f"clarion: {path} exists; use --force to overwrite it")
    path.write_text(EXAMPLE_CONFIG)
    typer.echo(f"Wrote {path}. Edit it, then run `clarion check --config {path}`.")


@app.command()
def check(config: ConfigOpt = None) -> None:
    """Validate the config (keys, values, secrets) without running anything."""
    from clarion.config import validate_all
    from clarion.credentials import CredentialError, keyring

    cfg = _config(config)
    try:
        validate_all(cfg)
        keyring(cfg)  # the desk's encryption keys, if set, must be real Fernet keys
    except (ConfigError, CredentialError) as exc:
        raise _fail(f"clarion: {exc}", 2) from None
    _channels(cfg)
    path = config_path(config)
    where = str(path) if path.exists() else "built-in defaults (no config file)"
    typer.echo(
        f"OK: {where}: {len(cfg.sources)} source(s), {len(cfg.channels)} channel(s), "
        f"{len(cfg.routes)} route(s); database {_mask_url(cfg.clarion.database_url)}"
    )


@app.command()
def export(
    target: Annotated[
        str | None,
        typer.Argument(help="A directory, or s3://bucket/prefix (default: [export] target)."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Write the public surface (pages, feeds, CAP documents, sitemap) as static files; to
    S3, upload only what changed."""
    from clarion.export import export as run_export

    cfg = _config(config)
    where = target or cfg.export.target
    if not where:
        raise _fail("clarion: say where to export (a directory or s3://bucket/prefix)", 2)
    store = _store(cfg)
    try:
        result = run_export(
            store, cfg, where, endpoint_url=cfg.export.endpoint_url, progress=typer.echo
        )
    except Exception as exc:  # an unreachable store, a missing bucket, no permission
        raise _fail(f"clarion: export to {where} failed: {exc}", 1) from None
    typer.echo(f"{where}: {result}")
    if result.failed:
        raise typer.Exit(1)


@app.command()
def platforms() -> None:
    """List every channel and source kind this Clarion knows, with each platform's rules
    (the table in docs/configuration.md)."""
    typer.echo(registry.markdown_tables(), nl=False)


def _mask_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _parse_files(kind: str, files: list[Path]) -> Iterator[tuple[Path, list[Notice]]]:
    """Each file's notices; a bad file is reported on stderr and skipped (exit 1 at the end)."""
    from clarion.sources import SourceError, parsers

    parse = parsers()
    if kind not in parse:
        raise _fail(f"clarion: unknown kind {kind!r}; choose from {', '.join(parse)}", 2)
    failed = 0
    for f in files:
        try:
            notices = parse[kind](f.read_bytes(), "")
        except SourceError as exc:
            typer.secho(f"{f}: {exc}", fg=typer.colors.RED, err=True)
            failed += 1
            continue
        yield f, notices
    if failed:
        raise typer.Exit(1)


@app.command()
def parse(
    files: Annotated[list[Path], typer.Argument(help="Files to parse.", exists=True)],
    kind: Annotated[str, typer.Option("--kind", "-k", help=KIND_HELP)] = "cap",
) -> None:
    """Print the notices Clarion finds in FILES, one JSON object per line. Stores nothing."""
    for _, notices in _parse_files(kind, files):
        for n in notices:
            typer.echo(json.dumps(n.to_json_dict(), ensure_ascii=False))


@app.command()
def render(
    files: Annotated[list[Path], typer.Argument(help="Files to render.", exists=True)],
    platform: Annotated[
        str,
        typer.Option(
            "--platform",
            "-p",
            help=_platform_help(),
        ),
    ] = "mastodon",
    kind: Annotated[str, typer.Option("--kind", "-k", help=KIND_HELP)] = "cap",
    permalink: Annotated[str, typer.Option(help="The notice page's URL to link to.")] = (
        "https://clarion.example/notices/1"
    ),
    thread_parts: Annotated[
        int,
        typer.Option(
            min=1,
            max=25,
            help="Split a long notice into up to this many numbered posts "
            f'({_threadable_help()}); they are listed under "thread".',
        ),
    ] = 1,
) -> None:
    """Print, as JSON lines, the post each notice in FILES would become on PLATFORM."""
    from clarion.channels.base import RenderContext

    if platform not in registry.previewable():
        raise _fail(f"clarion: unknown platform {platform!r}; choose from {_platform_help()}", 2)
    if thread_parts > 1 and platform not in registry.threadable():
        raise _fail(
            f"clarion: {platform} posts no threads of its own; --thread-parts works with "
            + _threadable_help(),
            2,
        )
    ctx = RenderContext(languages=("en",), permalink=permalink)
    for _, notices in _parse_files(kind, files):
        for n in notices:
            out = registry.render_for(platform, n, ctx, thread_parts=thread_parts)
            typer.echo(
                json.dumps(
                    {"platform": platform, "identifier": n.identifier, **out}, ensure_ascii=False
                )
            )


@app.command()
def replay(
    files: Annotated[list[Path], typer.Argument(help="Files to ingest.", exists=True)],
    kind: Annotated[str, typer.Option("--kind", "-k", help=KIND_HELP)] = "cap",
    source: Annotated[str, typer.Option(help="Source name to record them under.")] = "replay",
    include_expired: Annotated[
        bool,
        typer.Option(
            help="Route notices that have already expired (normally stored but never sent)."
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Ingest FILES through the real pipeline (store, route, render, enqueue)."""
    from clarion.pipeline import ingest

    cfg = _config(config)
    store = _store(cfg)
    channels = _channels(cfg, store)
    for f, notices in _parse_files(kind, files):
        r = ingest(store, cfg, channels, notices, source=source, include_expired=include_expired)
        typer.echo(
            f"{f}: {len(r.stored)} stored, {r.unchanged} unchanged, "
            f"{r.deliveries} deliveries queued, {r.superseded} superseded"
            + (f", {r.not_routed_stale} expired (not sent)" if r.not_routed_stale else "")
            + (f", {r.out_of_order} older than their thread (not sent)" if r.out_of_order else "")
        )


@app.command()
def rehearse(
    scenario: Annotated[
        Path, typer.Argument(help="A folder with scenario.toml and its snapshots.")
    ],
    as_json: Annotated[
        bool,
        typer.Option("--json", help="One JSON object per line for each thing sent or skipped."),
    ] = False,
) -> None:
    """Play time-stamped snapshots of sources through the real pipeline on a throwaway database
    against a simulated clock, and print what each channel would receive (nothing is sent).

    See docs/stories.md ("Rehearse a source before going live") for the scenario format.
    """
    from clarion.rehearse import ScenarioError, Summary
    from clarion.rehearse import rehearse as play

    summary = Summary()
    try:
        for step, events in play(scenario):
            summary.steps += 1
            summary.events += events
            if as_json:
                for e in events:
                    typer.echo(json.dumps(e.to_dict(), ensure_ascii=False))
                continue
            what = step.file.name if step.file is not None else f"HTTP {step.status}"
            typer.echo(f"{step.at:%Y-%m-%d %H:%M:%SZ}  {step.source} answers {what}")
            for e in events:
                where = f"{e.channel:<12}" if e.channel != "-" else f"{'(source)':<12}"
                if e.action == "skip":
                    typer.echo(f"    {where} skip   {e.identifier}: {e.reason}")
                else:
                    head = (e.text or "").splitlines()[0] if e.text else ""
                    typer.echo(
                        f"    {where} {e.action:<6} {e.identifier} (notice {e.thread} "
                        f"v{e.version}): {head[:100]}"
                    )
    except ScenarioError as exc:
        raise _fail(f"clarion rehearse: {exc}", 2) from None
    if not as_json:
        counts = summary.counts()
        typer.echo(
            f"\n{summary.steps} steps: "
            + ", ".join(
                f"{counts.get(a, 0)} {a}" for a in ("post", "reply", "edit", "delete", "skip")
            )
        )
        for reason, n in sorted(summary.skipped_by_reason().items(), key=lambda kv: -kv[1]):
            typer.echo(f"  skipped, {reason}: {n}")


@app.command()
def post(
    headline: Annotated[str, typer.Argument(help="What happened, in one line.")],
    description: Annotated[str, typer.Option(help="More detail.")] = "",
    instruction: Annotated[str, typer.Option(help="What people should do.")] = "",
    severity: Annotated[
        str, typer.Option(help="extreme|severe|moderate|minor|unknown")
    ] = "unknown",
    status: Annotated[str, typer.Option(help="actual|exercise|test|draft")] = "actual",
    link: Annotated[str | None, typer.Option(help="A link to more information.")] = None,
    area: Annotated[str | None, typer.Option(help="Area description.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Publish a manual notice through the pipeline."""
    import uuid

    from clarion.model import Area, Info, Notice, Severity, Status
    from clarion.pipeline import ingest

    cfg = _config(config)
    try:
        sev, st = Severity(severity.lower()), Status(status.lower())
    except ValueError as exc:
        raise _fail(f"clarion: {exc}", 2) from None
    ident = f"manual-{uuid.uuid4()}"
    notice = Notice(
        kind="manual",
        identifier=ident,
        sender=cfg.clarion.publisher_name,
        sent=datetime.now(UTC).replace(microsecond=0),
        status=st,
        thread_key=f"manual:{ident}",
        link=link,
        infos=[
            Info(
                language=cfg.clarion.languages[0],
                headline=headline,
                event=headline,
                description=description or None,
                instruction=instruction or None,
                severity=sev,
                web=link,
                sender_name=cfg.clarion.publisher_name,
                areas=[Area(description=area)] if area else [],
            )
        ],
    )
    store = _store(cfg)
    r = ingest(store, cfg, _channels(cfg, store), [notice], source="manual")
    typer.echo(f"Stored as notice {r.stored[0]}; {r.deliveries} deliveries queued.")


@app.command()
def status(config: ConfigOpt = None) -> None:
    """Show sources, channels and the outbox."""
    from clarion.status import channel_statuses, source_statuses

    cfg = _config(config)
    store = _store(cfg)
    typer.echo("Sources:")
    if not cfg.sources:
        typer.echo("  (none configured)")
    for h in source_statuses(store, cfg, sample=20):
        if h.state == "never polled":
            typer.echo(f"  {h.name} ({h.kind}): never polled")
            continue
        health = "ok" if not h.failing else f"FAILING x{h.consecutive_failures}: {h.last_error}"
        typer.echo(
            f"  {h.name} ({h.kind}): {health}; last success {h.last_success_at or 'never'}; "
            f"{h.notices_ingested} notices"
            + (f"; {len(h.rejected)} item(s) rejected" if h.rejected else "")
        )
    typer.echo("Channels:")
    for ch in channel_statuses(store, cfg, datetime.now(UTC)):
        typer.echo(f"  {ch.name} ({ch.kind}): {_channel_state(ch)}; {_queue(ch.queue)}")
        cc = cfg.channels[ch.name]
        if cc.kind == "activitypub":
            from clarion.fediverse.accounts import counts as follower_counts
            from clarion.fediverse.documents import handle

            username = str(getattr(cc, "username", ""))
            n = follower_counts(store, username)
            typer.echo(
                f"    {handle(cfg.clarion.public_url or 'http://localhost', username)}: "
                f"{n['accepted']} follower(s), {n['pending']} waiting for approval, "
                f"{n['dropped']} dropped (their server failed for days)"
            )


def _channel_state(ch: ChannelHealth) -> str:
    reason = f" ({ch.state_reason})" if ch.state != "active" and ch.state_reason else ""
    return ch.state + reason


def _queue(queue: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(queue.items())) or "nothing queued"


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@sources_app.callback()
def sources_list(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """List sources: health, last success, last error, items seen, latency."""
    if ctx.invoked_subcommand is not None:
        return
    from clarion.status import source_statuses as source_health

    cfg = _config(config)
    health = source_health(_store(cfg), cfg)
    if not health:
        typer.echo("No sources configured. Add [sources.NAME] tables to the config.")
        return
    for h in health:
        line = (
            f"{h.name} ({h.kind}): {h.state}; last success {h.last_success_at or 'never'}; "
            f"{h.items_seen} items seen, {h.notices_ingested} notices; "
            f"latency p50 {_ago(h.latency_p50)}, max {_ago(h.latency_max)}"
        )
        typer.echo(line)
        if h.state == "failing":
            typer.secho(
                f"    failing {h.consecutive_failures}x: {h.last_error}", fg=typer.colors.RED
            )
        for r in h.rejected:
            typer.secho(
                f"    rejected {r.item} ({r.reason}, {r.count}x, "
                f"last {r.last_at:%Y-%m-%d %H:%M}Z): {r.detail}",
                fg=typer.colors.YELLOW,
            )


@sources_app.command("test")
def sources_test(
    name: str,
    save: Annotated[
        Path | None,
        typer.Option(
            help="Also record what the source answered as a snapshot in this folder, with a "
            "step in its scenario.toml (for `clarion rehearse`)."
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Fetch source NAME once and print what would be ingested, as JSON lines. Stores nothing."""
    import httpx

    from clarion.net import guarded_client
    from clarion.sources import SourceError, build_sources
    from clarion.sources.base import FetchState

    cfg = _config(config)
    sources = build_sources(cfg)
    if name not in sources:
        raise _fail(f"clarion: no enabled source named {name!r}; have: {', '.join(sources)}", 2)
    answers: dict[str, tuple[bytes, str]] = {}

    def keep(response: httpx.Response) -> None:
        if save is not None and response.status_code == 200:
            response.read()
            answers[str(response.request.url)] = (
                response.content,
                response.headers.get("content-type", ""),
            )

    with guarded_client(
        cfg.clarion.networks(),
        timeout=30,
        follow_redirects=True,
        headers={"User-Agent": cfg.clarion.user_agent},
        event_hooks={"response": [keep]},
    ) as http:
        try:
            result = sources[name].poll(FetchState(), http)
        except SourceError as exc:
            raise _fail(f"clarion: {exc}") from None
    for n in result.notices:
        typer.echo(json.dumps(n.to_json_dict(), ensure_ascii=False))
    for r in result.rejected:
        typer.secho(f"rejected {r.item}: {r.detail}", err=True)
    typer.secho(f"{len(result.notices)} notice(s) would be ingested from {name}.", err=True)
    if save is not None:
        from clarion.rehearse import record_snapshot

        path = record_snapshot(
            save, name, cfg.sources[name], sources[name].url, answers, datetime.now(UTC)
        )
        typer.secho(f"snapshot saved: {path} (step added to {save / 'scenario.toml'})", err=True)


@channel_app.callback()
def channels_list(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """List channels: state, posts today and this month, spend against caps and budget."""
    if ctx.invoked_subcommand is not None:
        return
    from clarion.status import channel_statuses

    cfg = _config(config)
    store = _store(cfg)
    for ch in channel_statuses(store, cfg, datetime.now(UTC)):
        day = f"{ch.posts_today}" + (f"/{ch.daily_cap}" if ch.daily_cap else "")
        month = f"{ch.posts_this_month}" + (f"/{ch.monthly_cap}" if ch.monthly_cap else "")
        spend = f"{ch.spend_this_month:.2f}" + (
            f"/{ch.monthly_budget:.2f}" if ch.monthly_budget is not None else ""
        )
        typer.echo(
            f"{ch.name} ({ch.kind}): {_channel_state(ch)}; today {day}, this month {month}, "
            f"spent {spend}; {_queue(ch.queue)}"
        )


@channel_app.command("test")
def channels_test(
    name: str,
    send: Annotated[
        bool, typer.Option(help="Really post the test message (marked [TEST]).")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Show the test message channel NAME would get; with --send, post it (checks credentials)."""
    import uuid

    from clarion.channels.base import ChannelError, Outgoing, RenderContext
    from clarion.model import Info, Notice, Severity, Status
    from clarion.pipeline import permalink

    cfg = _config(config)
    channels = _channels(cfg, _store(cfg))
    if name not in channels:
        raise _fail(f"clarion: no enabled channel named {name!r}; have: {', '.join(channels)}", 2)
    now = datetime.now(UTC).replace(microsecond=0)
    ident = f"clarion-test-{uuid.uuid4()}"
    notice = Notice(
        kind="manual",
        identifier=ident,
        sender=cfg.clarion.publisher_name,
        sent=now,
        status=Status.TEST,
        thread_key=f"manual:{ident}",
        infos=[
            Info(
                headline=f"Test message from {cfg.clarion.publisher_name} to {name}",
                description="This is a test of Clarion's delivery. No action is needed.",
                severity=Severity.MINOR,
            )
        ],
    )
    channel = channels[name]
    rendered = channel.render(
        notice, RenderContext(tuple(cfg.clarion.languages), permalink(cfg, 0), thread_id=0)
    )
    payload = rendered.to_row()
    typer.echo(json.dumps(payload, ensure_ascii=False, indent=1))
    if not send:
        typer.echo("Preview only; add --send to post it.", err=True)
        return
    try:
        receipt = channel.send(Outgoing(str(uuid.uuid4()), notice, payload, None, None, 1))
    except ChannelError as exc:
        raise _fail(f"clarion: {name}: {exc.kind.value}: {exc.message}") from None
    finally:
        channel.close()
    typer.echo(f"Posted to {name}: {receipt.url or receipt.post_id}", err=True)


@channel_app.command("resume")
def channel_resume(name: str, config: ConfigOpt = None) -> None:
    """Mark a channel active again after fixing its credentials (held deliveries resume)."""
    from clarion.delivery.outbox import set_channel_state

    cfg = _config(config)
    if not set_channel_state(_store(cfg), name, "active", None, datetime.now(UTC)):
        raise _fail(f"clarion: no channel named {name!r} in the database")
    typer.echo(f"Channel {name} is active; its held deliveries will be sent.")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply database migrations (also done automatically at start)."""
    cfg = _config(config)
    store = _store(cfg, upgrade=False)
    store.upgrade()
    typer.echo(f"Database {_mask_url(cfg.clarion.database_url)} is up to date.")


@app.command()
def worker(
    config: ConfigOpt = None,
    once: Annotated[bool, typer.Option(help="Deliver what is due now, then exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the dispatcher (and source polling): deliver queued notices."""
    from clarion.runtime import make_dispatcher, settle, start_background

    _setup_logging(verbose)
    cfg = _config(config)
    store = _store(cfg)
    channels = _channels(cfg, store)
    _record_config(store, cfg)
    dispatcher = make_dispatcher(store, cfg, channels)
    if once:
        from clarion.channels.base import close_all
        from clarion.desk.drafts import send_due

        try:
            send_due(store, cfg, channels, datetime.now(UTC))  # desk notices scheduled for now
            n = dispatcher.run_until_idle()
        finally:
            close_all(channels)
        typer.echo(f"Processed {n} deliveries.")
        return
    stop = threading.Event()
    # SIGTERM (systemd, Docker) finishes the batch in hand, then exits; a batch cut short by a
    # harder kill is safe too: its leases run out and another worker resends with the same keys.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settle()
    start_background(store, cfg, channels, stop)
    logging.getLogger("clarion.worker").info(
        "worker %s started: %d channel(s), %d source(s)",
        dispatcher.worker,
        len(channels),
        len(cfg.sources),
    )
    try:
        dispatcher.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()


@app.command()
def web(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default $CLARION_PORT or 8080).")] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Processes serving the port (default 1).")
    ] = 1,
) -> None:
    """Serve the public page and feeds."""
    import os

    from clarion.runtime import serve_web

    cfg = _config(config)
    store = _store(cfg)
    _record_config(store, cfg)
    h, p = host or cfg.clarion.host, port or cfg.clarion.port
    channels = _channels(cfg, store)
    if workers > 1:  # each process reads the same config file
        os.environ["CLARION_CONFIG"] = str(config_path(config).resolve())
        if not config_path(config).exists():
            os.environ.pop("CLARION_CONFIG")
    typer.echo(
        f"Clarion is serving http://{h}:{p}/" + (f" ({workers} processes)" if workers > 1 else "")
    )
    serve_web(store, cfg, h, p, channels, workers=workers)


@app.command()
def run(
    config: ConfigOpt = None, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False
) -> None:
    """Run everything in one process: source polling, the dispatcher and the web server."""
    from clarion.runtime import make_dispatcher, serve_web, settle, start_background

    _setup_logging(verbose)
    cfg = _config(config)
    store = _store(cfg)
    channels = _channels(cfg, store)
    _record_config(store, cfg)
    stop = threading.Event()
    settle()
    start_background(store, cfg, channels, stop)
    dispatcher = make_dispatcher(store, cfg, channels)
    threading.Thread(target=dispatcher.run_forever, args=(stop,), daemon=True).start()
    typer.echo(f"Clarion is running: http://{cfg.clarion.host}:{cfg.clarion.port}/")
    try:
        serve_web(store, cfg, cfg.clarion.host, cfg.clarion.port, channels)
    finally:
        stop.set()


@app.command()
def demo(
    db: Annotated[Path, typer.Option(help="SQLite file for the demo (recreated).")] = Path(
        "demo.db"
    ),
    serve: Annotated[bool, typer.Option(help="Serve the page after the replay.")] = True,
) -> None:
    """Replay bundled real alerts and a blog post through Clarion, then serve the results."""
    from clarion.demo import run_demo

    run_demo(db, serve=serve, echo=typer.echo)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())


secrets_app = typer.Typer(
    help="Keys that encrypt credentials entered in the desk: keygen, rotate.",
    no_args_is_help=True,
)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("keygen")
def secrets_keygen() -> None:
    """Print a new Fernet key for `[clarion] secret_keys` (keep it in an env var or a file)."""
    from clarion.credentials import keygen

    typer.echo(keygen())


@secrets_app.command("rotate")
def secrets_rotate(config: ConfigOpt = None) -> None:
    """Re-encrypt every stored credential with the first key of `secret_keys`."""
    from clarion.credentials import CredentialError, keyring, rotate

    cfg = _config(config)
    try:
        keys = keyring(cfg)
        if keys is None:
            raise _fail("clarion: `[clarion] secret_keys` is not set: nothing to rotate to", 2)
        n = rotate(_store(cfg), keys)
    except CredentialError as exc:
        raise _fail(f"clarion: {exc}", 2) from None
    typer.echo(f"Re-encrypted {n} stored credential(s) with the newest key.")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who the key is for, e.g. 'county-911-cad'.")],
    write: Annotated[
        bool, typer.Option("--write", help="May also create, update and cancel notices.")
    ] = False,
    public_service: Annotated[
        bool,
        typer.Option(
            "--public-service", help="No rate limit (another agency, a broadcaster, a relay app)."
        ),
    ] = False,
    trusted: Annotated[
        bool,
        typer.Option(
            "--trusted",
            help="Trusted automation (with --write): what it writes goes out without the "
            "desk's two-person approval. Recorded in the audit log.",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Create an API key and print its token (shown this once; only a hash is kept).

    A write key's notices follow the desk's approval policy ([desk] approval_min_severity):
    those that need a second person wait at the desk. Only a key created --trusted skips it.
    """
    from clarion.desk import audit
    from clarion.keys import create_key

    cfg = _config(config)
    tier = "public_service" if public_service else "standard"
    if trusted and not write:
        raise _fail("clarion: --trusted needs --write (only a write key publishes)", 2)
    store = _store(cfg)
    now = datetime.now(UTC)
    key, token = create_key(store, name, now, write=write, tier=tier, trusted=trusted)
    if trusted:
        with store.write() as conn:
            audit.record(
                conn, now, "cli", "api_key_trusted", f"api key {key.id}",
                f"{name!r} created as trusted automation: its notices skip approval", None,
            )  # fmt: skip
    typer.echo(token)
    scopes = ", ".join(sorted(key.scopes))
    if trusted:
        scopes += " — TRUSTED AUTOMATION: its notices go out without approval"
    typer.secho(
        f"Key {key.id} for {name!r} ({scopes}; {tier.replace('_', ' ')}). Keep the token: "
        "it cannot be shown again. Send it as 'Authorization: Bearer <token>'.",
        err=True,
    )


@keys_app.command("list")
def keys_list(config: ConfigOpt = None) -> None:
    """List API keys (never their tokens)."""
    from clarion.keys import list_keys

    keys = list_keys(_store(_config(config)))
    if not keys:
        typer.echo("No API keys. Create one with: clarion keys create NAME")
        return
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        used = f"last used {k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never used"
        typer.echo(f"{k.id}  {k.name}  {','.join(sorted(k.scopes))}  {k.tier}  {state}, {used}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, as `clarion keys list` shows.")],
    config: ConfigOpt = None,
) -> None:
    """Revoke an API key: it is refused from the next request on."""
    from clarion.keys import revoke_key

    if not revoke_key(_store(_config(config)), key_id, datetime.now(UTC)):
        raise _fail(f"clarion: no active API key {key_id!r}; see clarion keys list", 1)
    typer.secho(f"Revoked key {key_id}.", err=True)


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name (a container with an arbitrary uid)
        return "cli"


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
]


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Lower-case letters, digits, '.', '_', '-'.")],
    role: Annotated[
        str, typer.Option("--role", "-r", help="viewer, editor, approver or admin.")
    ] = "editor",
    password_stdin: PasswordStdin = False,
    config: ConfigOpt = None,
) -> None:
    """Add a desk user (asks for the password twice, unless --password-stdin)."""
    from clarion.desk.accounts import AccountError, add_user

    cfg = _config(config)
    store = _store(cfg)
    try:
        user = add_user(
            store,
            username,
            _read_password(password_stdin),
            role,
            datetime.now(UTC),
            by=_cli_actor(),
        )
    except AccountError as exc:
        raise _fail(f"clarion: {exc}", 2) from None
    typer.echo(f"User {user.username} ({user.role}) added. They can log in at /desk.")


@users_app.command("list")
def users_list(config: ConfigOpt = None) -> None:
    """List desk users with their role, state and last login."""
    from clarion.desk.accounts import list_users

    found = list_users(_store(_config(config)))
    if not found:
        typer.echo("No desk users. Add one with: clarion users add NAME --role admin")
        return
    for u in found:
        state = f"disabled {u.disabled_at:%Y-%m-%d}" if u.disabled_at else "active"
        seen = f"last login {u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "never"
        typer.echo(f"{u.username}  {u.role}  {state}  {seen}")


def _users_change(action: str, username: str, config: str | None, password: str = "") -> None:
    from clarion.desk.accounts import AccountError, set_disabled, set_password

    store = _store(_config(config))
    now = datetime.now(UTC)
    try:
        if action == "passwd":
            set_password(store, username, password, now, by=_cli_actor())
        else:
            set_disabled(store, username, action == "disable", now, by=_cli_actor())
    except AccountError as exc:
        raise _fail(f"clarion: {exc}", 1) from None


@users_app.command("disable")
def users_disable(username: str, config: ConfigOpt = None) -> None:
    """Disable a user: they cannot log in, and their open sessions end now."""
    _users_change("disable", username, config)
    typer.echo(f"User {username} is disabled; their sessions have ended.")


@users_app.command("enable")
def users_enable(username: str, config: ConfigOpt = None) -> None:
    """Enable a disabled user again."""
    _users_change("enable", username, config)
    typer.echo(f"User {username} is enabled.")


@users_app.command("passwd")
def users_passwd(
    username: str, password_stdin: PasswordStdin = False, config: ConfigOpt = None
) -> None:
    """Set a user's password (their open sessions end)."""
    _users_change("passwd", username, config, _read_password(password_stdin))
    typer.echo(f"Password of {username} changed; their sessions have ended.")


def _fedi_account(cfg: Config, name: str) -> str:
    """An activitypub channel's username, given the channel's name or the username."""
    for channel, cc in cfg.channels.items():
        if cc.kind == "activitypub" and name in (channel, getattr(cc, "username", None)):
            return str(getattr(cc, "username", ""))
    have = [c for c, cc in cfg.channels.items() if cc.kind == "activitypub"]
    raise _fail(
        f"clarion: no fediverse account {name!r}"
        + (f"; have: {', '.join(have)}" if have else " (no activitypub channel is configured)"),
        2,
    )


@fediverse_app.command("followers")
def fediverse_followers(
    name: Annotated[str, typer.Argument(help="The activitypub channel, or its username.")],
    config: ConfigOpt = None,
) -> None:
    """List who follows an account: state, since when, where posts go, failures."""
    from clarion.fediverse.accounts import list_followers

    cfg = _config(config)
    username = _fedi_account(cfg, name)
    found = list_followers(_store(cfg), username)
    if not found:
        typer.echo(f"No one follows @{username} yet.")
        return
    for f in found:
        line = f"{f.actor}  {f.state}  since {f.created_at:%Y-%m-%d}  via {f.delivery_inbox}"
        if f.failing_since:
            line += f"  FAILING since {f.failing_since:%Y-%m-%d %H:%M}: {f.last_error}"
        typer.echo(line)


def _fedi_decide(name: str, actor: str, approve: bool, config: str | None) -> None:
    from clarion.fediverse import accounts
    from clarion.fediverse.client import Signer

    cfg = _config(config)
    username = _fedi_account(cfg, name)
    store = _store(cfg)
    pending = {f.actor: f for f in accounts.list_followers(store, username, "pending")}
    if actor not in pending:
        raise _fail(f"clarion: {actor} is not waiting for approval to follow @{username}", 1)
    if not approve:
        accounts.remove_follower(store, username, actor)
        typer.echo(f"Refused: {actor} does not follow @{username}.")
        return
    f = pending[actor]
    try:
        Signer(store, cfg.clarion.public_url or "", cfg.clarion.networks()).accept(
            username, actor, f.follow_id, f.inbox
        )
    except Exception as exc:  # the server is down or refuses: say so, change nothing
        raise _fail(f"clarion: could not tell {actor}'s server: {exc}", 1) from None
    accounts.set_state(store, username, actor, "accepted")
    typer.echo(f"Approved: {actor} now follows @{username}.")


@fediverse_app.command("approve")
def fediverse_approve(
    name: Annotated[str, typer.Argument(help="The activitypub channel, or its username.")],
    actor: Annotated[str, typer.Argument(help="The follower's actor URL, as `followers` lists.")],
    config: ConfigOpt = None,
) -> None:
    """Accept a follow request held for approval (manually_approves_followers)."""
    _fedi_decide(name, actor, True, config)


@fediverse_app.command("reject")
def fediverse_reject(
    name: Annotated[str, typer.Argument(help="The activitypub channel, or its username.")],
    actor: Annotated[str, typer.Argument(help="The follower's actor URL.")],
    config: ConfigOpt = None,
) -> None:
    """Refuse a follow request held for approval."""
    _fedi_decide(name, actor, False, config)


subscriptions_app = typer.Typer(
    help="People subscribed on the public page (Web Push, e-mail): keys, counts.",
    no_args_is_help=True,
)
app.add_typer(subscriptions_app, name="subscriptions")


@subscriptions_app.command("keys")
def subscriptions_keys() -> None:
    """Print a new VAPID private key for a webpush channel's `vapid_private_key` (keep it in
    an env var or a file; changing it later invalidates every browser's subscription)."""
    from clarion.subscriptions.webpush import Vapid, new_private_key

    key = new_private_key()
    typer.echo(key)
    typer.echo(
        f"# its public key (what browsers are given): {Vapid(key, 'mailto:x@x.x').public_key}",
        err=True,
    )


@subscriptions_app.command("count")
def subscriptions_count(config: ConfigOpt = None) -> None:
    """How many people are subscribed, by kind and state, and what they follow most (never
    who they are)."""
    from clarion.subscriptions import registry as subscribers

    c = subscribers.counts(_store(_config(config)))
    if not c["by_kind"]:
        typer.echo("Nobody has subscribed yet.")
        return
    for (kind, state), n in sorted(c["by_kind"].items()):
        typer.echo(f"{kind:8} {state:8} {n}")
    typer.echo(f"following a point on the map: {c['points']}")
    for term, n in c["by_term"][:20]:
        typer.echo(f"  {n:6}  {term}")


@subscriptions_app.command("bounce")
def subscriptions_bounce(config: ConfigOpt = None) -> None:
    """Read one bounce (a delivery status notification) on standard input and pause the
    e-mail subscription it is about, if the failure is permanent. For a mail server's pipe:
    route the `verp` bounce address (sender+b-…@) to this command."""
    from datetime import UTC, datetime

    from clarion.subscriptions import bounces

    raw = sys.stdin.buffer.read(bounces.MAX_BYTES + 1)
    try:
        bounce = bounces.read(raw)
    except ValueError as exc:
        typer.echo(f"not read: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(bounces.apply(_store(_config(config)), bounce, datetime.now(UTC)))
