"""The SSRF guard: addresses someone else chose are refused when they lead inside, at connect
time, after DNS resolution and on every redirect, unless the operator allowed the network."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from clarion.channels import build_channels
from clarion.channels.base import close_all
from clarion.cli import app
from clarion.delivery.dispatcher import Dispatcher
from clarion.net import guarded_client, parse_networks, permitted
from clarion.store import Store
from tests.conftest import WEBHOOK_SECRET, fixture_bytes
from tests.fakes.http import FakeServer, Response
from tests.fakes.mastodon import FakeMastodon
from tests.helpers import NOW, config, deliveries, demo_cap, ingest_bytes, rows


@pytest.fixture(autouse=True)
def _no_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLARION_ALLOW_NETWORKS", raising=False)


@pytest.fixture
def server() -> FakeServer:
    seen: list[str] = []

    def handle(req) -> Response:  # type: ignore[no-untyped-def]
        seen.append(f"{req.headers.get('host')}{req.path}")
        if req.path == "/redirect":
            target = req.query["to"]
            return Response(302, raw=b"", headers={"Location": target})
        return Response(200, raw=b"inside", content_type="text/plain")

    s = FakeServer(handle)
    s.seen = seen  # type: ignore[attr-defined]
    return s


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.9.9.9",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "fd00:ec2::254",  # AWS's IPv6 metadata address (unique local)
        "fe80::1%eth0",
        "224.0.0.1",
    ],
)
def test_inside_addresses_are_refused(address: str) -> None:
    assert not permitted(address)


def test_public_addresses_pass_and_allowed_networks_are_let_in() -> None:
    assert permitted("8.8.8.8") and permitted("2606:4700:4700::1111")
    allow = parse_networks(["10.20.0.0/16"])
    assert permitted("10.20.3.4", allow) and not permitted("10.21.0.1", allow)
    with pytest.raises(ValueError, match="not an IP network"):
        parse_networks(["10.0.0.0/33"])


def test_a_loopback_url_is_refused_before_any_request(server: FakeServer) -> None:
    with (
        server,
        guarded_client(timeout=2) as http,
        pytest.raises(httpx.ConnectError, match=r"refused to connect to 127\.0\.0\.1"),
    ):
        http.get(f"{server.url}/secret")
    assert server.seen == []  # type: ignore[attr-defined]


def test_a_name_that_resolves_inside_is_refused(server: FakeServer) -> None:
    """`localhost` resolves (through /etc/hosts) to loopback; a resolver that answers like a
    rebinding attacker's DNS is refused the same way."""
    with server:
        port = server.url.rsplit(":", 1)[1]
        with (
            guarded_client(timeout=2) as http,
            pytest.raises(httpx.ConnectError, match="refused to connect to localhost"),
        ):
            http.get(f"http://localhost:{port}/")
        rebinding = guarded_client(timeout=2, resolver=lambda host, p: ["127.0.0.1"])
        with rebinding, pytest.raises(httpx.ConnectError, match=r"rebind\.example"):
            rebinding.get(f"http://rebind.example:{port}/")
    assert server.seen == []  # type: ignore[attr-defined]


def test_the_connection_goes_to_the_address_that_was_checked(server: FakeServer) -> None:
    """An allowed name is connected to at the address resolved and checked (never looked up
    again), while the request still names its host."""
    with server:
        port = server.url.rsplit(":", 1)[1]
        allow = parse_networks(["127.0.0.1/32"])
        with guarded_client(allow, timeout=2, resolver=lambda h, p: ["127.0.0.1"]) as http:
            r = http.get(f"http://feeds.example:{port}/cap")
    assert r.text == "inside"
    assert server.seen == [f"feeds.example:{port}/cap"]  # type: ignore[attr-defined]


def test_a_redirect_to_a_private_address_is_refused(server: FakeServer) -> None:
    with server:
        allow = parse_networks(["127.0.0.1/32"])  # the first hop only
        port = server.url.rsplit(":", 1)[1]
        with guarded_client(allow, timeout=2, follow_redirects=True) as http:
            with pytest.raises(httpx.ConnectError, match=r"refused to connect to 127\.0\.0\.2"):
                http.get(f"{server.url}/redirect", params={"to": f"http://127.0.0.2:{port}/x"})
            with pytest.raises(httpx.ConnectError, match=r"169\.254\.169\.254"):
                http.get(
                    f"{server.url}/redirect",
                    params={"to": "http://169.254.169.254/latest/meta-data/"},
                )
    assert all("/redirect" in s for s in server.seen)  # type: ignore[attr-defined]


def test_a_webhook_channel_pointing_inside_is_held_back(
    server: FakeServer, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("W_SECRET", WEBHOOK_SECRET)
    with server:
        cfg = config(
            f"""
[clarion]
drop_expired = false
[channels.hook]
kind = "webhook"
url = "{server.url}/hook"
secret = {{ env = "W_SECRET" }}
[[routes]]
channels = ["hook"]
""",
            W_SECRET=WEBHOOK_SECRET,
        )
        chans = build_channels(cfg)
        ingest_bytes(sqlite_store, cfg, chans, demo_cap(0))
        Dispatcher(sqlite_store, chans, clock=lambda: NOW).run_until_idle()
        close_all(chans)
    [d] = rows(sqlite_store, deliveries)
    assert d.state == "retry_wait" and "refused to connect to 127.0.0.1" in d.last_error
    assert server.seen == []  # type: ignore[attr-defined]


def test_a_source_pointing_inside_is_refused_unless_allowed(
    server: FakeServer, tmp_path: Path
) -> None:
    path = tmp_path / "clarion.toml"
    with server:
        path.write_text(f"""
[clarion]
database_url = "sqlite:///{tmp_path / "c.db"}"
[sources.lan]
kind = "cap"
url = "{server.url}/alerts.cap"
""")
        r = CliRunner().invoke(app, ["sources", "test", "lan", "--config", str(path)])
        assert r.exit_code == 1 and "refused to connect to 127.0.0.1" in r.stderr
        assert server.seen == []  # type: ignore[attr-defined]
        r = CliRunner().invoke(
            app,
            ["sources", "test", "lan", "--config", str(path)],
            env={"CLARION_ALLOW_NETWORKS": "127.0.0.0/8"},
        )
        assert "refused" not in r.stderr and server.seen  # type: ignore[attr-defined]


def test_an_alert_image_pointing_at_cloud_metadata_is_never_fetched(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A hostile alert names the metadata service as its image: the image is left out (it
    would otherwise be uploaded in public), the post still goes."""
    base = b"http://newwcatwc.arh.noaa.gov/tsuPortal/events/PAAQ/2011/09/02/lqw6d6/2/WEPA41/"
    cap = (
        fixture_bytes("cap/wcatwc-warning.cap")
        .replace(
            base + b"2011/09/02/lqw6d6/energylqw6d6-02.jpg",
            b"http://169.254.169.254/latest/meta-data/iam/security-credentials/role",
        )
        .replace(base + b"2011/09/02/lqw6d6/02/ttvulqw6d6-02.jpg", b"http://10.0.0.7/map.jpg")
    )
    assert b"energylqw6d6" not in cap and b"ttvulqw6d6" not in cap  # no real image address left
    with FakeMastodon() as masto:
        monkeypatch.setenv("MA_TOKEN", masto.token)
        cfg = config(
            f"""
[clarion]
drop_expired = false
allow_networks = ["127.0.0.1/32"]
[channels.m]
kind = "mastodon"
instance = "{masto.url}"
token = {{ env = "MA_TOKEN" }}
[[routes]]
channels = ["m"]
""",
            MA_TOKEN=masto.token,
        )
        chans = build_channels(cfg)
        ingest_bytes(sqlite_store, cfg, chans, cap)
        Dispatcher(sqlite_store, chans, clock=lambda: NOW, drop_expired=False).run_until_idle()
        close_all(chans)
    [d] = rows(sqlite_store, deliveries)
    assert d.state == "sent" and masto.media == {}
    assert "refused to connect to 169.254.169.254" in caplog.text  # by the guard, not by luck
    assert "refused to connect to 10.0.0.7" in caplog.text


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("64:ff9b::7f00:1", "127.0.0.1 behind NAT64"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata behind NAT64"),
        ("2002:7f00:1::", "127.0.0.1 in 6to4"),
        ("2002:a00:1::1", "10.0.0.1 in 6to4"),
        ("::7f00:1", "127.0.0.1, IPv4-compatible"),
        ("::ffff:169.254.169.254", "cloud metadata, IPv4-mapped"),
    ],
)
def test_ipv6_forms_that_carry_an_inside_ipv4_address_are_refused(address: str, inner: str) -> None:
    assert not permitted(address), inner


def test_ipv6_forms_that_carry_a_public_ipv4_address_pass() -> None:
    assert permitted("64:ff9b::808:808")  # 8.8.8.8 through a NAT64 gateway
    assert permitted("2002:808:808::1")  # 8.8.8.8 in 6to4
    assert permitted("64:ff9b::7f00:1", parse_networks(["127.0.0.0/8"]))  # allowed inside


def _registry_rows() -> list[tuple[str, str, bool]]:
    from clarion.special_addresses import SPECIAL_V4, SPECIAL_V6

    return [*SPECIAL_V4, *SPECIAL_V6]


def _innermost(address: str) -> bool:
    """What the most specific registry row holding `address` says (an IPv4 address in no
    row is global; an IPv6 one only in 2000::/3)."""
    import ipaddress

    from clarion.net import embedded_ipv4

    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and (inner := embedded_ipv4(ip)) is not None:
        return _innermost(str(inner)) is not False  # where the connection really goes
    rows_holding = [
        (ipaddress.ip_network(n).prefixlen, g)
        for n, _, g in _registry_rows()
        if ip.version == ipaddress.ip_network(n).version and ip in ipaddress.ip_network(n)
    ]
    if rows_holding:
        return max(rows_holding)[1]
    return ip.version == 4 or ip in ipaddress.ip_network("2000::/3")


@pytest.mark.parametrize(("block", "name", "reachable"), _registry_rows())
def test_every_special_purpose_block_is_decided_as_the_registry_says(
    block: str, name: str, reachable: bool
) -> None:
    """Every entry of IANA's IPv4 and IPv6 special-purpose registries, at its first and last
    address: passed only where the registry says globally reachable (an address that carries
    an IPv4 one, mapped, 6to4 or NAT64, is decided by what it carries: at the block's ends,
    0.0.0.0 and 255.255.255.255, both refused)."""
    import ipaddress

    net = ipaddress.ip_network(block)
    for ip in (net[0], net[-1], net[net.num_addresses // 2]):
        expected = _innermost(str(ip))  # a more specific row may hold it
        assert permitted(str(ip)) is expected, (str(ip), name)
    if net.num_addresses == 1:
        assert permitted(str(net[0])) is reachable, name


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:0:7f00:1",  # 127.0.0.1, IPv4-translated (SIIT)
        "::ffff:0:808:808",  # …even a public one: a form no web server has
        "64:ff9b:1::7f00:1",  # local-use NAT64 (RFC 8215)
        "64:ff9b:1::808:808",
        "fec0::1",  # site-local, deprecated but routed by some networks
        "5f00::1",  # SRv6 SIDs
        "3fff::1",  # documentation (RFC 9637)
        "100:0:0:1::1",  # the dummy prefix (RFC 9780)
        "2001::1",  # Teredo (carries an obfuscated IPv4 address)
        "4000::1",  # outside 2000::/3: no global unicast there
    ],
)
def test_ranges_pythons_own_tables_miss_are_refused(address: str) -> None:
    assert not permitted(address)


def test_globally_reachable_special_blocks_pass() -> None:
    for address in ("192.0.0.9", "192.31.196.1", "2001:20::1", "2001:4:112::1", "2620:4f:8000::1"):
        assert permitted(address), address
