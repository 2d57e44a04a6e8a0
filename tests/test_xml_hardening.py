"""Hostile XML: the attack files are refused without any network or file access."""

from __future__ import annotations

import socket
import threading

import pytest
from lxml import etree

from clarion.sources.base import SourceError
from clarion.sources.cap import parse_cap
from clarion.sources.feed import parse_feed
from clarion.sources.xmlsafe import _parser, parse_xml
from tests.conftest import fixture_bytes


class Listener:
    """Counts connections to a loopback port that the attack files are pointed at."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> int:
        self.stop.set()
        self.thread.join()
        self.sock.close()
        return self.connections


def _aimed_at(name: str, port: int) -> bytes:
    return (
        fixture_bytes(name)
        .replace(b"localhost:8080", f"127.0.0.1:{port}".encode())
        .replace(b"googleusercontent.com", f"127.0.0.1:{port}".encode())
    )


@pytest.mark.parametrize("name", ["cap/xee.cap", "cap/xee.atom"])
def test_attack_files_are_refused_by_every_parser(name: str) -> None:
    listener = Listener()
    body = _aimed_at(name, listener.port)
    with pytest.raises(SourceError, match="DOCTYPE"):
        parse_cap(body)
    with pytest.raises(SourceError, match="DOCTYPE"):
        parse_feed(body, "application/atom+xml")
    assert listener.close() == 0


@pytest.mark.parametrize("name", ["cap/xee.cap", "cap/xee.atom"])
def test_parser_settings_alone_never_expand_or_fetch(name: str) -> None:
    """Defence in depth: even past the DOCTYPE check, libxml2 is set to load and expand nothing."""
    listener = Listener()
    body = _aimed_at(name, listener.port)
    try:
        root = etree.fromstring(body, parser=_parser())
    except etree.XMLSyntaxError:
        root = None  # refusing outright is fine too
    if root is not None:
        text = etree.tostring(root).decode()
        assert "root:" not in text  # nothing of /etc/passwd
    assert listener.close() == 0


def test_billion_laughs_refused() -> None:
    entities = "".join(f'<!ENTITY l{i} "&l{i - 1};&l{i - 1};&l{i - 1};">' for i in range(1, 10))
    bomb = f'<?xml version="1.0"?><!DOCTYPE b [<!ENTITY l0 "lol">{entities}]><b>&l9;</b>'
    with pytest.raises(SourceError, match="DOCTYPE"):
        parse_xml(bomb.encode())


def test_utf16_doctype_is_refused() -> None:
    body = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'
    with pytest.raises(SourceError, match="DOCTYPE"):
        parse_xml(body.encode("utf-16"))


def test_deep_nesting_refused() -> None:
    with pytest.raises(SourceError, match="deep"):
        parse_xml(b"<a>" * 200 + b"</a>" * 200)


QUOTED_PAGE = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Notes</title><link>https://e.org/</link>
<item><title>How to embed the map</title><link>https://e.org/embed</link>
<description><![CDATA[Paste this: <pre>&lt;!DOCTYPE html&gt;</pre>
<!DOCTYPE html><html></html>]]></description>
</item></channel></rss>"""


def test_a_doctype_inside_cdata_is_text_and_one_in_the_prolog_is_refused() -> None:
    """`<!DOCTYPE` quoted in a CDATA section (a feed about HTML) refused the whole feed as an
    XXE attempt; only a DOCTYPE in the prolog declares one, in any encoding the document
    starts in, after comments and processing instructions too."""
    [item] = parse_feed(QUOTED_PAGE)
    assert "DOCTYPE" in (item.infos[0].description or "")
    attack = b'<?xml version="1.0"?><!-- hi --><!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>'
    for body in (
        attack,
        b"\n\n" + attack,
        attack.decode().encode("utf-16"),  # with a byte-order mark
        attack.decode().encode("utf-16-be"),  # without one
        attack.decode().encode("utf-32-le"),
        b'<?xml version="1.0"?>\n<?pi x?>\n<!doctype r SYSTEM "file:///etc/passwd"><r/>',
    ):
        with pytest.raises(SourceError, match="declares a DOCTYPE"):
            parse_xml(body)


def test_whitespace_before_the_xml_declaration_is_tolerated() -> None:
    """A newline before `<?xml` (a publisher's template) refused the feed: libxml2 allows the
    declaration only at the very start. Leading whitespace is dropped first."""
    [item] = parse_feed(b"\r\n  \n" + QUOTED_PAGE)
    assert item.infos[0].headline == "How to embed the map"


@pytest.mark.parametrize(
    ("codec", "label"),
    [
        ("utf-16-be", "UTF-16"),
        ("utf-16-le", "UTF-16"),
        ("utf-32-le", "UTF-32"),
        ("utf-32-be", "UTF-32"),
    ],
)
def test_a_feed_in_utf16_or_utf32_without_a_byte_order_mark_is_read(codec: str, label: str) -> None:
    """XML 1.0 appendix F: the first bytes say the encoding; such a feed was refused as 'not
    XML'."""
    body = QUOTED_PAGE.replace(b'encoding="utf-8"', f'encoding="{label}"'.encode())
    [item] = parse_feed(body.decode().encode(codec))
    assert item.infos[0].headline == "How to embed the map"
