"""Hardened XML parsing for everything Clarion reads from outside.

Pure: no I/O. The parser never loads a DTD, never expands an entity, never touches the network
or the file system, and refuses documents that declare a DOCTYPE at all (a public alert has no
reason to carry one, and every XXE/billion-laughs attack needs one). Size and depth are capped.
"""

from __future__ import annotations

import re

from lxml import etree

from clarion.sources.base import SourceError

MAX_XML_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 64
# Checked on the document's prolog before libxml2 sees it, in the encoding its first bytes say
# (a DOCTYPE can only stand before the root element: inside a CDATA section, as a feed quoting
# an HTML page does, `<!DOCTYPE` is text).
_PROLOG_DOCTYPE = re.compile(r"\A\ufeff?\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*)*<!DOCTYPE", re.S | re.I)
_UNICODE_STARTS = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
)


def _prolog_declares_doctype(body: bytes) -> bool:
    head = body[: 256 * 1024]
    encoding = next((enc for start, enc in _UNICODE_STARTS if head.startswith(start)), "latin-1")
    text = head.decode(encoding, errors="ignore")
    return _PROLOG_DOCTYPE.match(text) is not None


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def parse_xml(
    body: bytes, *, what: str = "document", max_bytes: int = MAX_XML_BYTES
) -> etree._Element:
    """Parse untrusted XML bytes into an element tree, or raise `SourceError` saying why not."""
    if not isinstance(body, bytes | bytearray):
        raise SourceError(f"{what}: expected bytes, got {type(body).__name__}")
    if len(body) > max_bytes:
        raise SourceError(f"{what} is {len(body):,} bytes, over the {max_bytes:,}-byte limit")
    stripped = body.lstrip()
    if not stripped:
        raise SourceError(f"{what} is empty")
    if stripped[:1] != b"<" and not stripped.startswith(b"\xef\xbb\xbf<"):
        if body.startswith(tuple(start for start, _ in _UNICODE_STARTS)):
            stripped = body  # UTF-16 or UTF-32, with or without a byte-order mark (XML 1.0 F.1)
        else:
            raise SourceError(f"{what} is not XML (it starts with {stripped[:20]!r})")
    if len(stripped) != len(body) and stripped.startswith((b"<?xml", b"\xef\xbb\xbf<?xml")):
        body = stripped  # a newline before the XML declaration: the publisher's template
    if _prolog_declares_doctype(body):
        raise SourceError(
            f"{what} declares a DOCTYPE; refused, because Clarion never loads DTDs or expands "
            "entities (this is how XXE attacks work)"
        )
    try:
        root = etree.fromstring(bytes(body), parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise SourceError(f"{what} is not well-formed XML: {exc.msg}") from None
    if root is None:
        raise SourceError(f"{what} has no root element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise SourceError(
            f"{what} declares a DOCTYPE; refused, because Clarion never loads DTDs or expands "
            "entities (this is how XXE attacks work)"
        )
    if root.tag == "html" or local_name(root) == "html":
        raise SourceError(f"{what} is an HTML page, not a feed or alert (an error page?)")
    _check_depth(root, what)
    return root


# True when some element lies deeper than MAX_DEPTH (evaluated by libxml2, not in Python).
_TOO_DEEP = etree.XPath("boolean(/" + "/*" * (MAX_DEPTH + 1) + ")")


def _check_depth(root: etree._Element, what: str) -> None:
    if _TOO_DEEP(root):
        raise SourceError(f"{what} nests elements more than {MAX_DEPTH} deep")


def local_name(el: etree._Element) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def namespace(el: etree._Element) -> str:
    tag = el.tag
    if isinstance(tag, str) and tag.startswith("{"):
        return tag[1:].split("}", 1)[0]
    return ""


def children(el: etree._Element, name: str) -> list[etree._Element]:
    """Direct children with this local name, in any namespace (or none)."""
    return list(el.iterchildren("{*}" + name))


def child(el: etree._Element, name: str) -> etree._Element | None:
    return next(el.iterchildren("{*}" + name), None)


def text_of(el: etree._Element | None) -> str | None:
    """The element's text, stripped; None when the element is absent or empty."""
    if el is None:
        return None
    # A leaf (almost every CAP field) is its own text; mixed content, every text node within.
    value = ("".join(el.itertext()) if len(el) else el.text or "").strip()
    return value or None


def child_text(el: etree._Element, name: str) -> str | None:
    return text_of(child(el, name))


class Kids:
    """An element's direct children by local name (any namespace or none), read in one pass.

    A CAP <info> is read field by field: twenty lookups that each scanned its children cost
    more than libxml2 parsing the whole document; this reads them once.
    """

    __slots__ = ("_by_name",)

    def __init__(self, el: etree._Element) -> None:
        by_name: dict[str, list[etree._Element]] = {}
        for c in el:
            tag = c.tag
            if isinstance(tag, str):  # not a comment or processing instruction
                by_name.setdefault(tag.rpartition("}")[2], []).append(c)
        self._by_name = by_name

    def all(self, name: str) -> list[etree._Element]:
        return self._by_name.get(name, [])

    def first(self, name: str) -> etree._Element | None:
        found = self._by_name.get(name)
        return found[0] if found else None

    def text(self, name: str) -> str | None:
        return text_of(self.first(name))
