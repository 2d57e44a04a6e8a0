"""Enveloped XML-DSig on CAP messages, verified against the operator's trusted certificates.

Hand-written on lxml's canonicalisation and `cryptography`, rather than signxml, because CAP
distributors (NAADS in Canada, IPAWS in the US) add one enveloped signature after another to
the same alert, and each signature's `Reference URI=""` digests the alert with *every*
signature removed; signxml's enveloped transform removes only the signature being checked, so
it rejects such alerts (seen on `canada_signed.cap`, which Google's cap-library validates).

Pure: no I/O. Only trusted certificates are used (a key or certificate inside the message is
never trusted), and a certificate counts only if it was valid when the message was sent.
The message is `valid` when at least one signature verifies with a trusted certificate,
`invalid` when it is signed but none does, `unsigned` when it carries no signature.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree

from clarion.model import SignatureState

DS = "http://www.w3.org/2000/09/xmldsig#"
C14N = {
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315": (False, False),
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments": (False, True),
    "http://www.w3.org/2001/10/xml-exc-c14n#": (True, False),
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments": (True, True),
}
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
DIGESTS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": hashlib.sha1,
    "http://www.w3.org/2001/04/xmlenc#sha256": hashlib.sha256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashlib.sha384,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashlib.sha512,
}
SIGNATURES: dict[str, hashes.HashAlgorithm] = {
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1": hashes.SHA1(),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": hashes.SHA256(),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": hashes.SHA384(),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": hashes.SHA512(),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": hashes.SHA256(),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": hashes.SHA384(),
}


def load_certificates(pems: Sequence[bytes]) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    for pem in pems:
        certs.extend(x509.load_pem_x509_certificates(pem))
    return certs


class UnknownAlgorithm(ValueError):
    """A canonicalisation Clarion does not perform (C14N 1.1, 2.0): that signature is not
    checked, rather than checked under another algorithm's rules."""


def _c14n(el: etree._Element, algorithm: str | None) -> bytes:
    if algorithm and algorithm not in C14N:
        raise UnknownAlgorithm(algorithm)
    exclusive, comments = C14N.get(algorithm or "", (False, False))
    return bytes(etree.tostring(el, method="c14n", exclusive=exclusive, with_comments=comments))


def ecdsa_der(raw: bytes) -> bytes:
    """XML-DSig's ECDSA SignatureValue is r and s, each as long as the curve, concatenated
    (RFC 6931 section 2.3.6); `cryptography` takes the DER form."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if not raw or len(raw) % 2:
        raise ValueError("an ECDSA value is r and s of one length")
    half = len(raw) // 2
    return encode_dss_signature(
        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    )


def _alert_digest_ok(alert_bytes: bytes, ref: etree._Element) -> bool:
    if ref.get("URI") not in ("", None):
        return False  # CAP signs the whole alert; a detached or partial reference is not that
    transforms = [t.get("Algorithm") for t in ref.iterfind(f"{{{DS}}}Transforms/{{{DS}}}Transform")]
    if ENVELOPED not in transforms:
        return False
    c14n = next((t for t in transforms if t != ENVELOPED), None)
    digest_method = ref.find(f"{{{DS}}}DigestMethod")
    digest_value = ref.findtext(f"{{{DS}}}DigestValue")
    algorithm = DIGESTS.get(digest_method.get("Algorithm", "") if digest_method is not None else "")
    if algorithm is None or not digest_value:
        return False
    doc = etree.fromstring(
        alert_bytes, parser=etree.XMLParser(resolve_entities=False, no_network=True)
    )
    for sig in doc.findall(f"{{{DS}}}Signature"):  # every signature is enveloped: remove all
        doc.remove(sig)
    try:
        digest = base64.b64encode(algorithm(_c14n(doc, c14n)).digest()).decode()
    except UnknownAlgorithm:
        return False
    return digest == "".join(digest_value.split())


def _signature_ok(sig: etree._Element, cert: x509.Certificate) -> bool:
    signed_info = sig.find(f"{{{DS}}}SignedInfo")
    value = sig.findtext(f"{{{DS}}}SignatureValue")
    if signed_info is None or not value:
        return False
    c14n = signed_info.find(f"{{{DS}}}CanonicalizationMethod")
    method = signed_info.find(f"{{{DS}}}SignatureMethod")
    algorithm = SIGNATURES.get(method.get("Algorithm", "") if method is not None else "")
    if algorithm is None:
        return False
    try:
        data = _c14n(signed_info, c14n.get("Algorithm") if c14n is not None else None)
        raw = base64.b64decode("".join(value.split()))
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(raw, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(ecdsa_der(raw), data, ec.ECDSA(algorithm))
        else:
            return False
    except (InvalidSignature, ValueError):  # UnknownAlgorithm, bad base64 or length too
        return False
    return True


def _valid_at(cert: x509.Certificate, when: datetime) -> bool:
    return cert.not_valid_before_utc <= when <= cert.not_valid_after_utc


def verify_cap(
    alert_bytes: bytes, trusted: Sequence[x509.Certificate], sent: datetime
) -> SignatureState:
    """Check the enveloped signatures of one CAP `<alert>` (its bytes as received)."""
    try:
        root = etree.fromstring(
            alert_bytes, parser=etree.XMLParser(resolve_entities=False, no_network=True)
        )
    except etree.XMLSyntaxError:
        return SignatureState.INVALID
    signatures = root.findall(f"{{{DS}}}Signature")
    if not signatures:
        return SignatureState.UNSIGNED
    if not trusted:
        return SignatureState.UNCHECKED
    usable = [c for c in trusted if _valid_at(c, sent)]
    for sig in signatures:
        refs = sig.findall(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
        if len(refs) != 1 or not _alert_digest_ok(alert_bytes, refs[0]):
            continue
        if any(_signature_ok(sig, cert) for cert in usable):
            return SignatureState.VALID
    return SignatureState.INVALID
