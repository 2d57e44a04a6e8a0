"""Build `clarion rehearse` scenarios from the real fixtures, and play them.

Every snapshot is made from a real payload in tests/fixtures; where a scenario needs what the
captures do not hold (the earlier message an NWS segment continues, a later Cancel), it is
derived from a real message in the open, here, by changing only the fields named. The
derivations are the test's data and are read as such: nothing is hidden in committed files.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from clarion.cli import app
from tests.nws_dates import resolve

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()


def nws_features(name: str = "testing_alerts_active.json") -> list[dict[str, Any]]:
    """The capture's features, its relative-date tokens resolved at 2026-11-27T12:00Z."""
    data = json.loads(resolve((FIXTURES / "nws-api" / name).read_bytes()))
    return list(data["features"])


def feature(suffix: str, name: str = "testing_alerts_active.json") -> dict[str, Any]:
    """A copy of the feature whose id ends with `suffix`."""
    for f in nws_features(name):
        if f["properties"]["id"].endswith(suffix):
            return copy.deepcopy(f)
    raise KeyError(suffix)


def derive(f: dict[str, Any], **props: Any) -> dict[str, Any]:
    """A copy of feature `f` with the named properties replaced (id also sets @id and id)."""
    out = copy.deepcopy(f)
    out["properties"].update(props)
    if "id" in props:
        out["id"] = out["properties"]["@id"] = f"https://api.weather.gov/alerts/{props['id']}"
    return out


def ref(f: dict[str, Any]) -> dict[str, str]:
    p = f["properties"]
    return {"@id": f["id"], "identifier": p["id"], "sender": p["sender"], "sent": p["sent"]}


def collection(*features: dict[str, Any]) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": list(features)}).encode()


class Scenario:
    """A scenario folder being written: snapshots, sources, channels and steps."""

    def __init__(self, root: Path, head: str) -> None:
        self.root = root
        self.head = head.strip() + "\n"
        self.steps: list[str] = []
        self.n = 0

    def file(self, body: bytes, suffix: str = ".json") -> str:
        self.n += 1
        name = f"snap{self.n:02d}{suffix}"
        (self.root / name).write_bytes(body)
        return name

    def step(
        self,
        at: str,
        source: str,
        body: bytes | None = None,
        *,
        status: int | None = None,
        suffix: str = ".json",
        urls: dict[str, bytes] | None = None,
    ) -> None:
        lines = ["[[step]]", f'at = "{at}"', f'source = "{source}"']
        if body is not None:
            lines.append(f'file = "{self.file(body, suffix)}"')
        else:
            lines.append(f"status = {status}")
        if urls:
            pairs = ", ".join(f'"{u}" = "{self.file(b, ".cap")}"' for u, b in urls.items())
            lines.append(f"urls = {{ {pairs} }}")
        self.steps.append("\n".join(lines))

    def play(self) -> list[dict[str, Any]]:
        (self.root / "scenario.toml").write_text(self.head + "\n" + "\n\n".join(self.steps))
        r = runner.invoke(app, ["rehearse", "--json", str(self.root)])
        assert r.exit_code == 0, r.output
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def sent(events: list[dict[str, Any]]) -> list[tuple[str, str, str, str | None]]:
    """(at, channel, action, identifier tail, reply_to tail) of what went out, in order."""
    return [
        (e["at"], e["channel"], e["action"], tail(e["identifier"]), tail(e["reply_to"]))
        for e in events
        if e["action"] != "skip"
    ]


def skips(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (e["channel"], tail(e["identifier"]), e["reason"]) for e in events if e["action"] == "skip"
    ]


def tail(identifier: str | None) -> str | None:
    """The distinguishing end of an NWS URN ("…ca21e454.002.1"), or the identifier as it is."""
    if identifier is None:
        return None
    if identifier.startswith("urn:oid:"):
        return identifier[-20:]
    return identifier


def tail_of(f: dict[str, Any]) -> str:
    t = tail(f["properties"]["id"])
    assert t is not None
    return t
