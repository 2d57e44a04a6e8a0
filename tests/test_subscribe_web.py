"""Subscribing from the public page: e-mail with double opt-in through a real SMTP server
(aiosmtpd), the confirmation link followed, alerts mailed one per subscriber with RFC 8058
one-click unsubscribe and threading; Web Push subscriptions posted by the page's script; the
management link; and what a stranger may not do (floods, huge or hostile requests)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clarion.channels import build_channels
from clarion.delivery.dispatcher import Dispatcher
from clarion.store import Store
from clarion.store.schema import subscriptions
from clarion.subscriptions.webpush import new_private_key
from clarion.web.app import create_app
from tests.fakes.mailbox import smtp_server
from tests.fakes.push_service import PushService
from tests.helpers import config, count, demo_cap, ingest_bytes, rows

ALERT_AT = datetime(2010, 8, 30, 11, 0, tzinfo=UTC)
UPDATE_AT = datetime(2010, 8, 30, 16, 30, tzinfo=UTC)


@pytest.fixture
def site(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    server = smtp_server()
    box = server.__enter__()
    port = box.port
    monkeypatch.setenv("VAPID_KEY", new_private_key())
    cfg = config(f"""
[clarion]
public_url = "https://alerts.example.org"
publisher_name = "Great Falls Weather"
[channels.mail]
kind = "email"
host = "127.0.0.1"
port = {port}
security = "none"
sender = "alerts@example.org"
subscribers = true
verp = true
[channels.push]
kind = "webpush"
vapid_private_key = {{ env = "VAPID_KEY" }}
subject = "mailto:ops@example.org"
[[routes]]
channels = ["mail", "push"]
""")
    chans = build_channels(cfg)

    class Site:
        store = sqlite_store
        mailbox = box
        channels = chans

        def __init__(self) -> None:
            self.cfg = cfg

        def ingest(self, n: int, at: datetime) -> Any:
            r = ingest_bytes(sqlite_store, cfg, chans, demo_cap(n), now=at)
            Dispatcher(sqlite_store, chans, clock=lambda: at).run_until_idle()
            return r

    try:
        with TestClient(create_app(sqlite_store, cfg)) as client:
            s = Site()
            s.client = client  # type: ignore[attr-defined]
            yield s
    finally:
        server.__exit__(None, None, None)
        for c in chans.values():
            c.close()


def link(text: str, path: str) -> str:
    m = re.search(
        rf"https://alerts\.example\.org({re.escape(path)}(?!confirm/|unsubscribe/)[A-Za-z0-9_\-]+)",
        text,
    )
    assert m, text
    return m.group(1)


def test_the_form_works_without_script_and_its_page_may_run_only_its_own(site: Any) -> None:
    r = site.client.get("/subscribe")
    assert r.status_code == 200
    assert 'name="email"' in r.text and 'action="/subscribe"' in r.text
    assert 'id="push" hidden' in r.text  # shown by the script only, where a browser can push
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "geolocation=(self)" in r.headers["permissions-policy"]
    assert site.client.head("/subscribe").status_code == 200
    # Everywhere else on the public page: no script at all, no location.
    home = site.client.get("/")
    assert "script-src 'none'" in home.headers["content-security-policy"]
    assert 'href="/subscribe"' in home.text
    sw = site.client.get("/sw.js")
    assert sw.headers["content-type"].startswith("text/javascript")
    assert "showNotification" in sw.text


def test_email_double_opt_in_then_alerts_threaded_with_one_click_unsubscribe(site: Any) -> None:
    r = site.client.post(
        "/subscribe",
        data={"email": "reader@example.net", "places": "Lewis and Clark, Zzyzx Road"},
    )
    assert r.status_code == 202 and "confirmation link" in r.text
    [mail] = site.mailbox.messages
    assert mail["To"] == "reader@example.net"
    body = mail.get_content()
    assert "Zzyzx" not in body  # nothing the requester typed goes to the address
    confirm = link(body, "/subscriptions/confirm/")
    manage = link(body, "/subscriptions/")
    # Nothing is sent before the link is followed and Confirm pressed.
    assert site.ingest(0, ALERT_AT).deliveries == 0
    page = site.client.get(confirm)  # what a mail scanner does: changes nothing
    assert page.status_code == 200 and f'action="{confirm}"' in page.text
    assert rows(site.store, subscriptions)[0].state == "pending"
    assert site.client.post(confirm).status_code == 200
    assert rows(site.store, subscriptions)[0].state == "active"
    assert site.client.post(confirm).status_code == 404  # used once

    # The story's update reaches the subscriber who now follows it.
    site.ingest(1, UPDATE_AT)
    [_, alert] = site.mailbox.messages
    assert alert["To"] == "reader@example.net"
    assert alert["Subject"].startswith("Flash Flood Watch")
    unsubscribe = alert["List-Unsubscribe"].strip("<>")
    assert alert["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe in alert.get_body(("plain",)).get_content()
    # Its cancel is threaded under it, for this subscriber.
    site.ingest(2, datetime(2010, 8, 30, 20, 30, tzinfo=UTC))
    cancel = site.mailbox.messages[-1]
    assert cancel["In-Reply-To"] == alert["Message-ID"]

    manage_page = site.client.get(manage)
    assert "reader@example.net" in manage_page.text and "lewis" in manage_page.text.lower()
    assert manage_page.headers["cache-control"] == "no-store"
    # RFC 8058: the mail client POSTs "List-Unsubscribe=One-Click" to the link.
    path = unsubscribe.removeprefix("https://alerts.example.org")
    r = site.client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200
    assert count(site.store, subscriptions) == 0
    assert site.client.get(manage).status_code == 404


def test_one_confirmation_mail_per_address_a_day_and_the_same_answer(site: Any) -> None:
    for _ in range(3):
        r = site.client.post("/subscribe", data={"email": "Victim@Example.net", "areas": "MTZ014"})
        assert r.status_code == 202
    r = site.client.post("/subscribe", data={"email": "victim@example.net", "areas": "MTZ014"})
    assert r.status_code == 202
    assert len(site.mailbox.messages) == 1


def test_one_mailbox_gets_one_confirmation_a_day_however_it_is_spelt(site: Any) -> None:
    """Security item 6: spelling one address differently (a comment, an encoded word, case, a
    trailing dot, Unicode forms) sent 18 confirmation mails to one mailbox in a minute. Each
    spelling is one mailbox (canonical, by email-validator), or refused; the envelope goes to
    the canonical address, never to what a header parser makes of the text."""
    spellings = [
        "victim@example.net",
        "VICTIM@EXAMPLE.NET",
        " Victim@Example.Net ",
        "victim@xn--exmple-cua.net",  # punycode, and its Unicode spelling below: one domain
        "victim@exämple.net",
    ]
    for address in spellings:
        r = site.client.post("/subscribe", data={"email": address, "areas": "MTZ014"})
        assert r.status_code == 202, (address, r.text)
    for address in (
        "(1)victim@example.net",
        "=?utf-8?q?victim?=@example.net",
        "victim@example.net.",
        '"victim"@example.net',
        "victim@[127.0.0.1]",
        "victim@example.net\r\nBcc: other@example.net",
    ):
        r = site.client.post("/subscribe", data={"email": address, "areas": "MTZ014"})
        assert r.status_code == 422 and "not an e-mail address" in r.text, address
    assert site.mailbox.envelope_recipients == ["victim@example.net", "victim@xn--exmple-cua.net"]


def test_subscribing_is_limited_per_client_network(site: Any) -> None:
    """Counted per /24 (IPv4) or /56 (IPv6): walking through the addresses one holds buys no
    more requests; another network is not held back by it."""
    from clarion.web.subscribe import PER_HOUR, client_network

    assert client_network("203.0.113.77") == "203.0.113.0/24"
    assert client_network("2001:db8:1:ff::1") == "2001:db8:1::/56"
    assert client_network("::ffff:203.0.113.9") == "203.0.113.0/24"
    assert client_network("testclient") == "testclient"
    api = site.cfg.api.model_copy(update={"trust_proxy": True})
    client = TestClient(create_app(site.store, site.cfg.model_copy(update={"api": api})))

    def ask(ip: str, i: int) -> int:
        return int(
            client.post(
                "/subscribe",
                data={"email": f"p{i}@example.net", "areas": "MTZ014"},
                headers={"X-Forwarded-For": ip},
            ).status_code
        )

    codes = [ask(f"2001:db8:1:{i % 200:x}::{i}", i) for i in range(PER_HOUR + 1)]
    assert codes == [202] * PER_HOUR + [429]
    assert ask("2001:db8:2::1", 99) == 202


def test_a_bouncing_address_is_paused(site: Any) -> None:
    site.client.post("/subscribe", data={"email": "gone@example.net", "areas": "MTZ014"})
    confirm = link(site.mailbox.messages[0].get_content(), "/subscriptions/confirm/")
    site.client.post(confirm)
    site.mailbox.refuse.add("gone@example.net")
    from clarion.store.schema import subscription_sends
    from clarion.subscriptions import registry

    # Three distinct stories, each refused.
    for i in range(registry.PAUSE_AFTER):
        other = demo_cap(0).replace(b"</identifier>", f"-{i}</identifier>".encode(), 1)
        ingest_bytes(site.store, site.cfg, site.channels, other, now=ALERT_AT)
        Dispatcher(site.store, site.channels, clock=lambda: ALERT_AT).run_until_idle()
    [sub] = rows(site.store, subscriptions)
    assert sub.state == "paused" and "550" in (sub.paused_reason or "")
    assert count(site.store, subscription_sends, subscription_sends.c.state == "refused") == 3


def test_a_browser_subscribes_and_manages_its_notifications(site: Any) -> None:
    with PushService() as push:
        browser = push.subscribe()
        r = site.client.post(
            "/subscribe",
            json={
                "kind": "webpush",
                "subscription": browser.as_json(),
                "interests": {"point": [46.5891, -112.0391], "min_severity": "severe"},
            },
        )
        assert r.status_code == 201, r.text
        manage = r.json()["manage"].removeprefix("https://alerts.example.org")
        page = site.client.get(manage)
        assert "browser" in page.text and "Active" in page.text
        assert (
            site.client.post(manage, data={"action": "pause"}, follow_redirects=False).status_code
            == 303
        )
        assert "Paused" in site.client.get(manage).text
        assert (
            site.client.post(manage, data={"action": "resume"}, follow_redirects=False).status_code
            == 303
        )
        r = site.client.post(
            manage, data={"action": "change", "areas": "MTZ014"}, follow_redirects=False
        )
        assert r.status_code == 303
        [sub] = rows(site.store, subscriptions)
        assert sub.interests["areas"] == ["MTZ014"] and sub.min_severity is None
        site.ingest(0, ALERT_AT)
        assert [m["payload"]["type"] for m in browser.got] == ["alert"]
        site.client.post(manage, data={"action": "unsubscribe"})
        assert site.client.get(manage).status_code == 404
        assert count(site.store, subscriptions) == 0


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (
            {
                "kind": "webpush",
                "subscription": {
                    "endpoint": "http://10.0.0.1/push",
                    "keys": {"p256dh": "x", "auth": "y"},
                },
                "interests": {"areas": ["MTZ014"]},
            },
            "endpoint",
        ),
        (
            {
                "kind": "email",
                "email": "a@example.net",
                "interests": {"areas": [f"A{i}" for i in range(1000)]},
            },
            "at most 50",
        ),
        (
            {
                "kind": "email",
                "email": "a@example.net",
                "interests": {"polygon": [[0, 0], [1, 1], [1, 0]]},
            },
            "Extra inputs",
        ),
        ({"kind": "email", "email": "a@example.net", "interests": {}}, "Choose what to follow"),
        (
            {"kind": "email", "email": "not an address", "interests": {"areas": ["MTZ014"]}},
            "not an e-mail",
        ),
        ({"kind": "sms", "interests": {"areas": ["MTZ014"]}}, "kind"),
        ([1, 2, 3], "JSON object"),
    ],
)
def test_hostile_subscriptions_are_refused_with_a_reason(site: Any, body: Any, why: str) -> None:
    r = site.client.post("/subscribe", json=body)
    assert r.status_code == 422 and why in r.json()["detail"]
    assert count(site.store, subscriptions) == 0 and site.mailbox.messages == []


def test_subscribing_is_limited_per_client(site: Any) -> None:
    from clarion.web.subscribe import PER_HOUR

    for i in range(PER_HOUR):
        r = site.client.post(
            "/subscribe",
            json={
                "kind": "email",
                "email": f"p{i}@example.net",
                "interests": {"areas": ["MTZ014"]},
            },
        )
        assert r.status_code == 202
    r = site.client.post(
        "/subscribe",
        json={"kind": "email", "email": "more@example.net", "interests": {"areas": ["MTZ014"]}},
    )
    assert r.status_code == 429 and r.headers["retry-after"] == "3600"
    assert site.client.post(
        "/subscribe",
        content=b'{"kind": "' + b"x" * 20_000 + b'"}',
        headers={"Content-Type": "application/json"},
    ).status_code in (413, 429)


def test_the_desk_counts_subscribers_and_each_deliverys_reach_never_who(site: Any) -> None:
    from clarion.desk import accounts
    from tests.helpers import desk_login

    with PushService() as push:
        for _ in range(2):
            site.client.post(
                "/subscribe",
                json={
                    "kind": "webpush",
                    "subscription": push.subscribe().as_json(),
                    "interests": {"areas": ["MTZ014"]},
                },
            )
        site.client.post("/subscribe", data={"email": "who@example.net", "places": "Lewis"})
        site.ingest(0, ALERT_AT)
    accounts.add_user(site.store, "ops", "a long enough password", "viewer", ALERT_AT, by="test")
    # The desk's cookies are Secure: it is reached over https (as its public URL says).
    desk = TestClient(create_app(site.store, site.cfg), base_url="https://alerts.example.org")
    assert desk_login(desk, "ops", "a long enough password").status_code == 303
    home = desk.get("/desk").text
    assert "Subscribers" in home and "area:mtz014: 2" in home
    cells = re.findall(r"<td>(\d+)</td>", home.split('class="subscribers"')[1].split("</table>")[0])
    assert cells == ["2", "0", "0", "0", "0", "1"]  # push: 2 active; e-mail: 1 waiting
    assert "who@example.net" not in home
    thread = desk.get("/desk/threads/1").text
    assert "subscribers: 2 reached" in thread


def test_an_editor_sends_a_test_to_their_own_subscription_only(site: Any) -> None:
    from clarion.desk import accounts
    from tests.helpers import desk_login

    with PushService() as push:
        mine, theirs = push.subscribe(), push.subscribe()
        links = []
        for b in (mine, theirs):
            r = site.client.post(
                "/subscribe",
                json={
                    "kind": "webpush",
                    "subscription": b.as_json(),
                    "interests": {"areas": ["MTZ014"]},
                },
            )
            links.append(r.json()["manage"])
        accounts.add_user(site.store, "ed", "a long enough password", "editor", ALERT_AT, by="t")
        accounts.add_user(site.store, "vi", "a long enough password", "viewer", ALERT_AT, by="t")
        desk = TestClient(create_app(site.store, site.cfg), base_url="https://alerts.example.org")
        desk_login(desk, "ed", "a long enough password")
        home = desk.get("/desk").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', home).group(1)
        r = desk.post("/desk/subscriptions/test", data={"csrf": csrf, "link": links[0]})
        assert r.status_code == 200 and "Test sent." in r.text
        assert [m["payload"]["type"] for m in mine.got] == ["test"] and theirs.got == []
        r = desk.post("/desk/subscriptions/test", data={"csrf": csrf, "link": "https://x/y"})
        assert "not a subscription" in r.text and len(mine.got) == 1
        viewer = TestClient(create_app(site.store, site.cfg), base_url="https://alerts.example.org")
        desk_login(viewer, "vi", "a long enough password")
        vhome = viewer.get("/desk").text
        assert "/desk/subscriptions/test" not in vhome
        vcsrf = re.search(r'name="csrf" value="([^"]+)"', vhome).group(1)
        r = viewer.post("/desk/subscriptions/test", data={"csrf": vcsrf, "link": links[0]})
        assert r.status_code == 403 and len(mine.got) == 1


def test_a_test_mail_to_ones_own_email_subscription(site: Any) -> None:
    from clarion.desk import accounts
    from tests.helpers import desk_login

    site.client.post("/subscribe", data={"email": "me@example.net", "areas": "MTZ014"})
    body = site.mailbox.messages[0].get_content()
    site.client.post(link(body, "/subscriptions/confirm/"))
    manage = "https://alerts.example.org" + link(body, "/subscriptions/")
    accounts.add_user(site.store, "ed", "a long enough password", "editor", ALERT_AT, by="t")
    desk = TestClient(create_app(site.store, site.cfg), base_url="https://alerts.example.org")
    desk_login(desk, "ed", "a long enough password")
    csrf = re.search(r'name="csrf" value="([^"]+)"', desk.get("/desk").text).group(1)
    assert (
        "Test sent."
        in desk.post("/desk/subscriptions/test", data={"csrf": csrf, "link": manage}).text
    )
    test = site.mailbox.messages[-1]
    assert test["To"] == "me@example.net" and test["Subject"].startswith("Test from")
    assert test["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_point_follows_the_publishers_areas_it_lies_in(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Most NWS alerts name zones without a polygon: with the publisher's area shapes
    (`[subscriptions] areas`), a subscriber's point follows the zones it lies in, and such an
    alert reaches them; a point elsewhere, and the same point without the shapes, do not."""
    from clarion.subscriptions.webpush import new_private_key as key
    from tests.conftest import FIXTURES

    monkeypatch.setenv("VAPID_KEY", key())
    base = """
[clarion]
public_url = "https://alerts.example.org"
[channels.push]
kind = "webpush"
vapid_private_key = { env = "VAPID_KEY" }
subject = "mailto:ops@example.org"
[[routes]]
channels = ["push"]
"""
    areas = FIXTURES / "areas" / "montana-zones.geojson"
    with_areas = config(base + f'[subscriptions]\nareas = "{areas}"\n')
    chans = build_channels(with_areas)
    with PushService() as push, TestClient(create_app(sqlite_store, with_areas)) as client:
        helena, bozeman = push.subscribe(), push.subscribe()
        for b, point in ((helena, [46.5891, -112.0391]), (bozeman, [45.677, -111.0429])):
            r = client.post(
                "/subscribe",
                json={
                    "kind": "webpush",
                    "subscription": b.as_json(),
                    "interests": {"point": point},
                },
            )
            assert r.status_code == 201
        manage = r.json()["manage"].removeprefix("https://alerts.example.org")
        assert "Gallatin Valley" in client.get(manage).text  # where the point is, in words
        ingest_bytes(sqlite_store, with_areas, chans, demo_cap(0), now=ALERT_AT)  # MTZ014
        Dispatcher(sqlite_store, chans, clock=lambda: ALERT_AT).run_until_idle()
        assert len(helena.got) == 1 and bozeman.got == []
    for c in chans.values():
        c.close()


def test_unusable_area_shapes_are_a_clear_error_at_start(
    sqlite_store: Store, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clarion.config import ConfigError
    from clarion.subscriptions.webpush import new_private_key as key

    monkeypatch.setenv("VAPID_KEY", key())
    bad = tmp_path / "areas.geojson"
    for text, why in [
        ("not json", "not JSON"),
        ('{"type": "Feature"}', "FeatureCollection"),
        (
            '{"type": "FeatureCollection", "features": [{"properties": {}, "geometry": '
            '{"type": "Point", "coordinates": [0, 0]}}]}',
            "no 'code' property",
        ),
        (
            '{"type": "FeatureCollection", "features": [{"properties": {"code": "X"}, "geometry": '
            '{"type": "Point", "coordinates": [0, 0]}}]}',
            "not a polygon",
        ),
        (
            '{"type": "FeatureCollection", "features": [{"properties": {"code": "X"}, "geometry": '
            '{"type": "Polygon", "coordinates": [[[0, 500], [1, 500], [1, 501], [0, 500]]]}}]}',
            "not longitude, latitude",
        ),
    ]:
        bad.write_text(text)
        cfg = config(f"""
[clarion]
public_url = "https://alerts.example.org"
[channels.push]
kind = "webpush"
vapid_private_key = {{ env = "VAPID_KEY" }}
subject = "mailto:ops@example.org"
[subscriptions]
areas = "{bad}"
""")
        with pytest.raises(ConfigError, match=why):
            create_app(sqlite_store, cfg)


DSN = """From: MAILER-DAEMON@mx.example.net
To: <{to}>
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

This is the mail system at host mx.example.net. The mail could not be delivered.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Mon, 30 Aug 2010 11:00:05 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected

--b--
"""


def test_a_bounce_that_comes_back_later_pauses_the_address(site: Any, tmp_path: Any) -> None:
    """RFC 3464 bounces piped to `clarion subscriptions bounce`: the mails' envelope sender
    carries each subscriber's key (VERP), so a hard bounce pauses exactly that subscription;
    a delay changes nothing; without the key, the DSN's Final-Recipient names it."""
    from typer.testing import CliRunner

    from clarion.cli import app

    for who in ("gone@example.net", "other@example.net"):
        site.client.post("/subscribe", data={"email": who, "areas": "MTZ014"})
        site.client.post(link(site.mailbox.messages[-1].get_content(), "/subscriptions/confirm/"))
    site.ingest(0, ALERT_AT)
    by_address = {r.address: r for r in rows(site.store, subscriptions)}
    gone = by_address["gone@example.net"]
    assert f"alerts+b-{gone.unsubscribe_key}@example.org" in site.mailbox.envelope_senders

    cfg_file = tmp_path / "clarion.toml"
    cfg_file.write_text(f'[clarion]\ndatabase_url = "{site.store.engine.url}"\n')

    def bounce(to: str, recipient: str, action: str, status: str) -> str:
        raw = DSN.format(to=to, recipient=recipient, action=action, status=status)
        r = CliRunner().invoke(
            app, ["subscriptions", "bounce", "--config", str(cfg_file)], input=raw.encode()
        )
        assert r.exit_code == 0, r.output
        return r.output

    verp = f"alerts+b-{gone.unsubscribe_key}@example.org"
    assert "nothing changed" in bounce(verp, "gone@example.net", "delayed", "4.4.1")
    assert {r.state for r in rows(site.store, subscriptions)} == {"active"}
    assert "paused 1" in bounce(verp, "gone@example.net", "failed", "5.1.1")
    states = {r.address: (r.state, r.paused_reason) for r in rows(site.store, subscriptions)}
    assert states["gone@example.net"] == ("paused", "the address bounced (5.1.1)")
    assert states["other@example.net"][0] == "active"
    # Security item 3: a forged DSN mailed to the public sender address, naming only the
    # victim as its Final-Recipient, proves nothing: nothing changes, and it is counted.
    assert "nothing changed" in bounce("alerts@example.org", "other@example.net", "failed", "5.2.1")
    guessed = "alerts+b-" + "A" * 32 + "@example.org"  # a key of the right form, nobody's
    assert "no subscriber's" in bounce(guessed, "other@example.net", "failed", "5.1.1")
    states = {r.address: r.state for r in rows(site.store, subscriptions)}
    assert states == {"gone@example.net": "paused", "other@example.net": "active"}
    from clarion.desk import audit

    actions = [e.action for e in audit.entries(site.store, audit.AuditFilter())]
    assert actions.count("bounce_ignored") == 2 and actions.count("bounce_paused") == 1


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "empty"),
        (b"\r\n\r\n", "empty"),
        (
            b"Content-Type: multipart/mixed; boundary=x\r\n\r\n"
            + b"--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" * 400,
            "parts",
        ),
        (b"Content-Type: message/delivery-status\r\n\r\n\x00\xff\xfe", "no VERP key"),
        (b"\xff" * 1000, "no VERP key"),
    ],
)
def test_a_malformed_or_nested_bounce_is_one_line_never_a_traceback(
    site: Any, tmp_path: Any, raw: bytes, why: str
) -> None:
    from typer.testing import CliRunner

    from clarion.cli import app

    cfg_file = tmp_path / "clarion.toml"
    cfg_file.write_text(f'[clarion]\ndatabase_url = "{site.store.engine.url}"\n')
    r = CliRunner().invoke(app, ["subscriptions", "bounce", "--config", str(cfg_file)], input=raw)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert why in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
