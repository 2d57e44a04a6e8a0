"""Every route of the app, walked from its own router table with values no database can hold
(a NUL, half a surrogate pair), overlong and nested values, and a file where text belongs, on
SQLite and on PostgreSQL (security item 8: a `%00` in a filter, a path, the unsubscribe link,
the login name or `/subscribe` answered 500 on PostgreSQL). Nothing may answer 5xx; what the
request cannot mean is a 4xx (or, where the value is just text that matches nothing, a 2xx
that shows nothing)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Route

from clarion.channels import build_channels
from clarion.delivery.dispatcher import Dispatcher
from clarion.desk import accounts
from clarion.keys import create_key
from clarion.store import Store
from clarion.subscriptions.webpush import new_private_key
from clarion.web.app import create_app
from tests.conftest import WEBHOOK_SECRET
from tests.helpers import NOW, config, demo_cap, desk_login, ingest_bytes

CONFIG = """
[clarion]
public_url = "https://alerts.example.org"
[api]
anonymous_per_hour = 1000000
[sources.ops]
kind = "push"
secret = { env = "PUSH_SECRET" }
[channels.preview]
kind = "preview"
[channels.mail]
kind = "email"
host = "127.0.0.1"
port = 9
security = "none"
sender = "alerts@example.org"
subscribers = true
verp = true
[channels.push]
kind = "webpush"
vapid_private_key = { env = "VAPID_KEY" }
subject = "mailto:ops@example.org"
[channels.fedi]
kind = "activitypub"
username = "alerts"
[[routes]]
channels = ["preview", "mail", "push", "fedi"]
"""
PASSWORD = "correct horse battery"

# As each lands in a URL (percent-encoded bytes) and in a form or JSON body.
HOSTILE = {
    "nul": ("%00", "a\x00b"),
    "surrogate": ("%ED%A0%80", "a\ud800b"),
    "overlong": ("a" * 5000, "a" * 100_000),
    "nested": ("%5B" * 500, "[" * 5000),
}
FIELDS = [
    "email",
    "username",
    "password",
    "areas",
    "places",
    "routes",
    "stops",
    "components",
    "languages",
    "lat",
    "lon",
    "sources",
    "min_severity",
    "headline",
    "description",
    "instruction",
    "event",
    "status",
    "severity",
    "urgency",
    "certainty",
    "area",
    "name",
    "text",
    "note",
    "reason",
    "intent",
    "channel",
    "template",
    "role",
    "token",
    "url",
    "kind",
    "q",
    "lang",
    "before",
    "after",
    "source",
    "publisher",
    "id",
]


@pytest.fixture
def app(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str, str]]:
    monkeypatch.setenv("PUSH_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("VAPID_KEY", new_private_key())
    cfg = config(CONFIG)
    chans = build_channels(cfg)
    for i in range(3):
        ingest_bytes(store, cfg, chans, demo_cap(i), now=NOW)
    Dispatcher(store, chans, clock=lambda: NOW).run_until_idle()
    accounts.add_user(store, "root", PASSWORD, "admin", NOW, by="test")
    _, token = create_key(store, "walk", NOW, write=True, trusted=True)
    app = create_app(store, cfg, chans)
    with TestClient(
        app, base_url="https://alerts.example.org", raise_server_exceptions=False
    ) as client:
        assert desk_login(client, "root", PASSWORD).status_code == 303
        page = client.get("/desk")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, "the desk's forms carry a token"
        yield client, token, csrf.group(1)
    for c in chans.values():
        c.close()


def _flat(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The app's routes, those of included routers too (FastAPI keeps each included router
    as one entry of `app.routes`, its own routes behind it)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            more = getattr(getattr(route, "include_context", None), "prefix", "") or ""
            yield from _flat(inner.routes, prefix + more)
        elif isinstance(route, Route):
            yield prefix + route.path, route


def _routes(client: TestClient) -> list[tuple[str, str, list[str]]]:
    out = []
    for path, route in _flat(client.app.routes):  # type: ignore[attr-defined]
        if path.endswith(("/stream", "/desk/events")):  # an event stream never ends by design
            continue
        dependant = getattr(route, "dependant", None)
        query = [p.name for p in dependant.query_params] if dependant else []
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                out.append((method, path, query))
    # Logging out ends the walk's session: last, so every desk route is walked logged in.
    return sorted(out, key=lambda r: "logout" in r[1])


def _path(template: str, raw: str) -> str:
    return re.sub(r"\{[^}]+\}", raw, template)


def test_no_route_answers_a_server_error_to_what_no_database_can_hold(
    app: tuple[TestClient, str, str],
) -> None:
    client, token, csrf = app
    routes = _routes(client)
    assert len(routes) > 60  # the walk reaches the whole app, not a corner of it
    failures: list[str] = []
    for method, template, query in routes:
        for name, (raw, text) in HOSTILE.items():
            url = _path(template, raw) + "?" + "&".join(f"{q}={raw}" for q in [*query, "lang"])
            headers = {
                "Authorization": f"Bearer {token}",
                "X-CSRF-Token": csrf,
                "Origin": "https://alerts.example.org",
            }
            sends: list[dict[str, Any]] = [{}]
            if method in ("POST", "PUT", "PATCH", "DELETE"):
                form = "&".join(f"{f}={raw}" for f in FIELDS) + f"&csrf={csrf}"
                doc: Any = {f: text for f in FIELDS} | {"interests": {"areas": [text]}}
                if name == "nested":
                    body = ("[" * 3000 + "]" * 3000).encode()
                else:
                    body = json.dumps(doc).encode()
                sends = [
                    {
                        "content": form.encode(),
                        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
                    },
                    {"content": body, "headers": {"Content-Type": "application/json"}},
                    {"files": {"email": ("x.txt", b"\x00\xff" * 100)}, "data": {"csrf": csrf}},
                ]
            for extra in sends:
                more = extra.pop("headers", {})
                r = client.request(
                    method, url, headers={**headers, **more}, follow_redirects=False, **extra
                )
                if r.status_code >= 500:
                    failures.append(f"{method} {template} [{name}] {list(extra) or ['url']}: "
                                    f"{r.status_code} {r.text[:120]!r}")  # fmt: skip
    assert failures == [], "\n".join(failures)


@pytest.mark.parametrize(
    ("path", "query", "refused"),
    [
        (b"/feeds/all.atom", b"area=MTZ014", None),
        (b"/notices/1", b"", None),
        (b"/sources/na%C3%AFve", b"q=caf%C3%A9+cr%C3%A8me", None),  # UTF-8 is text
        (b"/feeds/all.atom", b"area=%00", "a query value holds a NUL"),
        (b"/feeds/all.atom", b"%00=x", "a query value holds a NUL"),
        (b"/sources/%00", b"", "the address holds a NUL"),
        (b"/subscriptions/unsubscribe/%ED%A0%80", b"", "not UTF-8"),  # an encoded surrogate
        (b"/feeds/all.atom", b"source=%FF", "not UTF-8"),
        (b"/feeds/all.atom", b"source=%C0%80", "not UTF-8"),  # an overlong NUL
    ],
)
def test_an_address_holding_what_no_database_can_hold_is_refused(
    path: bytes, query: bytes, refused: str | None
) -> None:
    from clarion.web.textgate import address_problem

    problem = address_problem(path, query)
    assert (problem is None) if refused is None else (refused in (problem or "")), problem


@pytest.mark.parametrize(
    ("content_type", "body", "refused"),
    [
        ("application/x-www-form-urlencoded", b"email=a%40b.example&areas=MTZ014", None),
        ("application/x-www-form-urlencoded", b"username=root%00", "NUL"),
        ("application/x-www-form-urlencoded", b"username=%ED%B0%80", "not UTF-8"),
        ("application/json", b'{"headline": "caf\\u00e9 \\ud83d\\ude00"}', None),  # a pair
        ("application/json", b'{"headline": "a\\ud83d"}', "half a surrogate"),
        ("application/json", b'{"\\udc00": 1}', "half a surrogate"),
        ("application/json", b'{"headline": "a\\u0000"}', "NUL"),
        ("application/json", b'{"severity": NaN}', "NaN"),
        ("application/json", b"[" * 100 + b"]" * 100, "nested deeper"),
        ("application/json; charset=utf-8", b"{", "not valid JSON"),
        ("application/json", b"", None),  # no body: the handler says what it needs
        ("text/plain", b"\x00", None),  # not text fields: the handler's to judge
    ],
)
def test_a_body_holding_what_no_database_can_hold_is_refused(
    content_type: str, body: bytes, refused: str | None
) -> None:
    from clarion.web.textgate import body_problem

    problem = body_problem(content_type, body, "/api/v1/notices")
    assert (problem is None) if refused is None else (refused in (problem or "")), problem
    if content_type == "application/json" and body:  # pushes read their JSON themselves
        assert body_problem(content_type, body, "/hooks/ops") is None


def test_a_multipart_form_is_read_part_by_part() -> None:
    from clarion.web.textgate import body_problem

    def form(*parts: bytes) -> bytes:
        return b"".join(b"--B\r\n" + p + b"\r\n" for p in parts) + b"--B--\r\n"

    text = b'Content-Disposition: form-data; name="headline"\r\n\r\nBoil water'
    nul = b'Content-Disposition: form-data; name="headline"\r\n\r\nBoil\x00water'
    upload = b'Content-Disposition: form-data; name="email"; filename="x"\r\n\r\n\xff'
    ctype = "multipart/form-data; boundary=B"
    assert body_problem(ctype, form(text), "/desk/compose") is None
    assert "NUL" in (body_problem(ctype, form(text, nul), "/desk/compose") or "")
    assert "a file" in (body_problem(ctype, form(upload), "/subscribe") or "")
    assert "boundary" in (body_problem("multipart/form-data", b"x", "/subscribe") or "")
