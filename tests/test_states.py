"""One writer per state: every change of a delivery's state goes through `delivery.outbox`,
checked against the state machine in `delivery.states`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from clarion.delivery.states import MOVES, BadTransition, DeliveryState, check

SRC = Path(__file__).resolve().parent.parent / "src" / "clarion"


def test_the_machine_allows_what_delivery_does_and_nothing_else() -> None:
    S = DeliveryState
    assert check(None, "pending") is S.PENDING
    for before, after in (("pending", "sending"), ("sending", "sent"), ("sending", "retry_wait"),
                          ("retry_wait", "sending"), ("failed", "pending"),
                          ("pending", "superseded"), ("sending", "sending")):  # fmt: skip
        assert check(before, after) is S(after)
    for before, after in (("sent", "pending"), ("superseded", "sending"), (None, "sent"),
                          ("cancelled", "pending"), ("sent", "sent")):  # fmt: skip
        with pytest.raises(BadTransition):
            check(before, after)
    assert all(not MOVES[s] for s in (S.SENT, S.SUPERSEDED, S.CANCELLED))  # terminal


def test_only_the_outbox_writes_a_deliverys_state() -> None:
    """No module outside `clarion/delivery/` inserts into or updates the deliveries table."""
    writers = []
    for path in SRC.rglob("*.py"):
        if path.parent.name == "delivery" or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("insert", "update")
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id == "deliveries"
            ):
                writers.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert writers == []


def test_connectors_stay_in_their_layer() -> None:
    """Sources are parsers plus a fetch, channels render and send, render is pure: nothing in
    `render/`, `sources/` or `channels/` imports the web app, the pipeline or the store (the
    poll loop, WebSub subscriptions and a channel's database are handed in from outside); and
    `render/` imports no channel, source or the registry of them."""
    common = ("clarion.web", "clarion.pipeline", "clarion.store", "clarion.polling")
    found = []
    for layer in ("render", "sources", "channels"):
        forbidden = common
        if layer == "render":
            forbidden += ("clarion.channels", "clarion.sources", "clarion.registry")
        for path in (SRC / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                for name in names:
                    if name.startswith(forbidden):
                        found.append(f"{path.relative_to(SRC)}:{node.lineno} imports {name}")
    assert found == []


def test_web_handlers_write_no_sql() -> None:
    """SQL lives with the store (`clarion.store.public`, `.desk`, `.receipts` and the domain
    modules' named functions): nothing in `web/` imports SQLAlchemy or the tables."""
    found = []
    for path in (SRC / "web").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith(("sqlalchemy", "clarion.store.schema", "clarion.store.db")):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} imports {name}")
    assert found == []
