"""XML-DSig on CAP: verified against trusted certificates only; routing can require it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import httpx
import pytest

from clarion.config import ConfigError
from clarion.model import SignatureState
from clarion.polling import poll_source
from clarion.sources import build_sources
from clarion.sources.cap import parse_cap
from clarion.sources.capsig import load_certificates, verify_cap
from clarion.store import Store
from tests.conftest import FIXTURES, fixture_bytes
from tests.fakes.http import FakeServer, Request, Response
from tests.helpers import NOW, channels_for, config, deliveries, notices, rows

SIGNED = fixture_bytes("cap/canada_signed.cap")
EC = load_certificates([fixture_bytes("cap/environment_canada_x509_cert.pem")])
NAADS = load_certificates([fixture_bytes("cap/naads_x509_cert.pem")])
SENT = parse_cap(SIGNED)[0].sent


def test_valid_with_the_signers_certificate() -> None:
    assert verify_cap(SIGNED, EC, SENT) is SignatureState.VALID
    assert verify_cap(SIGNED, NAADS + EC, SENT) is SignatureState.VALID


def test_untrusted_tampered_and_expired_are_invalid() -> None:
    assert verify_cap(SIGNED, NAADS, SENT) is SignatureState.INVALID  # see note in capsig
    tampered = SIGNED.replace(b"snowfall warning", b"snowfall warming")
    assert verify_cap(tampered, EC, SENT) is SignatureState.INVALID
    # The certificate expired in 2015: a message claiming to be sent after that is not valid.
    assert verify_cap(SIGNED, EC, datetime(2020, 1, 1, tzinfo=UTC)) is SignatureState.INVALID


def test_unsigned_and_unchecked() -> None:
    weather = fixture_bytes("cap/weather.cap")
    assert verify_cap(weather, EC, SENT) is SignatureState.UNSIGNED
    assert verify_cap(SIGNED, [], SENT) is SignatureState.UNCHECKED
    # A key carried inside the message is never trusted.
    quake = fixture_bytes("cap/earthquake-iso8859-1.cap")
    assert verify_cap(quake, EC, parse_cap(quake)[0].sent) is SignatureState.INVALID


def _serve(files: dict[str, bytes], barrier: threading.Barrier | None = None) -> FakeServer:
    def handle(req: Request) -> Response:
        if barrier is not None and req.path.startswith("/doc"):
            barrier.wait(timeout=10)  # only passes if `parties` requests are in flight at once
        return Response(200, raw=files[req.path], content_type="application/cap+xml")

    return FakeServer(handle)


def test_routing_can_require_a_valid_signature(store: Store) -> None:
    files = {"/signed.cap": SIGNED, "/plain.cap": fixture_bytes("cap/weather.cap")}
    with _serve(files) as server:
        cfg = config(f"""
[clarion]
drop_expired = false
[sources.signed]
kind = "cap"
url = "{server.url}/signed.cap"
trusted_certificates = ["{FIXTURES / "cap/environment_canada_x509_cert.pem"}"]
[sources.plain]
kind = "cap"
url = "{server.url}/plain.cap"
trusted_certificates = ["{FIXTURES / "cap/environment_canada_x509_cert.pem"}"]
[channels.verified_only]
kind = "preview"
[[routes]]
channels = ["verified_only"]
signature = "valid"
""")
        chans, srcs = channels_for(cfg), build_sources(cfg)
        with httpx.Client() as http:
            for name in ("signed", "plain"):
                assert poll_source(store, cfg, chans, srcs[name], http, now=NOW) is not None
    by_source = {n.source: n for n in rows(store, notices)}
    assert by_source["signed"].signature == "valid" and by_source["plain"].signature == "unsigned"
    assert by_source["signed"].original == SIGNED  # kept byte for byte for republishing
    [d] = rows(store, deliveries)
    assert d.notice_id == by_source["signed"].id


def test_missing_certificate_file_is_a_config_error(tmp_path) -> None:
    cfg = config(f"""
[sources.s]
kind = "cap"
url = "https://example.org/a.cap"
trusted_certificates = ["{tmp_path / "nope.pem"}"]
""")
    with pytest.raises(ConfigError, match=r"sources\.s\.trusted_certificates\[0\]: cannot read"):
        build_sources(cfg)


def test_index_documents_are_fetched_concurrently(store: Store) -> None:
    n = 4
    base = fixture_bytes("cap/weather.cap")
    docs = {
        f"/doc{i}.cap": base.replace(b"MT</identifier>", f"MT-{i}</identifier>".encode())
        for i in range(n)
    }
    barrier = threading.Barrier(n)
    server = _serve(docs, barrier)
    entries = "".join(f"<entry><id>{p}</id><link href='{server.url}{p}'/></entry>" for p in docs)
    docs["/index.atom"] = (
        f"<feed xmlns='http://www.w3.org/2005/Atom'><id>i</id>{entries}</feed>"
    ).encode()
    with server:
        cfg = config(f"""
[sources.idx]
kind = "cap"
url = "{server.url}/index.atom"
concurrency = {n}
[channels.p]
kind = "preview"
""")
        with httpx.Client() as http:
            r = poll_source(store, cfg, channels_for(cfg), build_sources(cfg)["idx"], http, now=NOW)
    assert r is not None and len(r.stored) == n


def _ecdsa_signed(alert: bytes, c14n: str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"):  # type: ignore[no-untyped-def]
    """`alert` with an enveloped XML-DSig ECDSA-SHA256 signature as XML-DSig writes it (the
    SignatureValue is r and s concatenated, RFC 6931), by a fresh P-256 key and its
    self-signed certificate: (signed bytes, certificate, the same signed with DER)."""
    import base64
    import hashlib
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cryptography.x509.oid import NameOID
    from lxml import etree

    ds = "http://www.w3.org/2000/09/xmldsig#"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alerts.example.gov")])
    start = datetime(2009, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=365 * 30))
        .sign(key, hashes.SHA256())
    )
    doc = etree.fromstring(alert)
    canonical = etree.tostring(doc, method="c14n", with_comments=False)
    digest = base64.b64encode(hashlib.sha256(canonical).digest()).decode()
    sig = etree.SubElement(doc, f"{{{ds}}}Signature", nsmap={"ds": ds})
    info = etree.SubElement(sig, f"{{{ds}}}SignedInfo")
    etree.SubElement(info, f"{{{ds}}}CanonicalizationMethod", Algorithm=c14n)
    etree.SubElement(
        info, f"{{{ds}}}SignatureMethod",
        Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    )  # fmt: skip
    ref = etree.SubElement(info, f"{{{ds}}}Reference", URI="")
    transforms = etree.SubElement(ref, f"{{{ds}}}Transforms")
    etree.SubElement(
        transforms, f"{{{ds}}}Transform",
        Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    )  # fmt: skip
    etree.SubElement(
        ref, f"{{{ds}}}DigestMethod", Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"
    )
    etree.SubElement(ref, f"{{{ds}}}DigestValue").text = digest
    value = etree.SubElement(sig, f"{{{ds}}}SignatureValue")
    der = key.sign(etree.tostring(info, method="c14n"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    value.text = base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode()
    signed = etree.tostring(doc)
    value.text = base64.b64encode(der).decode()
    return signed, cert, etree.tostring(doc)


def test_an_ecdsa_signature_as_xml_dsig_writes_it_verifies() -> None:
    """ECDSA-signed CAP never verified: XML-DSig's SignatureValue is r‖s, and it was handed to
    `cryptography` as if it were DER. A tampered message, a DER value (not XML-DSig's form)
    and a canonicalisation Clarion does not perform (C14N 1.1) do not verify."""
    alert = fixture_bytes("cap/weather.cap")
    signed, cert, der_signed = _ecdsa_signed(alert)
    sent = datetime(2010, 8, 30, 10, 7, tzinfo=UTC)
    assert verify_cap(signed, [cert], sent) is SignatureState.VALID
    assert verify_cap(signed.replace(b"FLASH FLOOD", b"FLASH FLOOF"), [cert], sent) is (
        SignatureState.INVALID
    )
    assert verify_cap(der_signed, [cert], sent) is SignatureState.INVALID
    c14n11, cert11, _ = _ecdsa_signed(alert, "http://www.w3.org/2006/12/xml-c14n11")
    assert verify_cap(c14n11, [cert11], sent) is SignatureState.INVALID
