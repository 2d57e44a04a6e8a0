"""HTTP Signatures (draft-cavage, rsa-sha256) as the fediverse signs server-to-server requests:
what Clarion signs verifies; a tampered body, a changed header, a stale or future date, a
missing signature or digest, and the wrong key are each refused with the reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from clarion.fediverse.signatures import SignatureError, new_key, sign, verify

NOW = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
KEY_ID = "https://alerts.example.org/ap/alerts#main-key"
URL = "https://mastodon.example/inbox"
BODY = json.dumps({"type": "Create", "id": "https://alerts.example.org/ap/a/1"}).encode()
PRIVATE, PUBLIC = new_key()
OTHER_PRIVATE, OTHER_PUBLIC = new_key()


def keys(key_id: str) -> str:
    assert key_id == KEY_ID
    return PUBLIC


def signed(body: bytes | None = BODY, at: datetime = NOW) -> dict[str, str]:
    return sign("POST", URL, body, KEY_ID, PRIVATE, now=at)


def test_a_signed_request_verifies() -> None:
    h = signed()
    assert h["Host"] == "mastodon.example" and h["Digest"].startswith("SHA-256=")
    assert 'headers="(request-target) host date digest content-type"' in h["Signature"]
    assert verify("POST", "/inbox", h, BODY, keys, now=NOW + timedelta(minutes=5)) == KEY_ID
    get = sign("GET", "https://alerts.example.org/ap/alerts?page=1", None, KEY_ID, PRIVATE, now=NOW)
    assert "digest" not in get["Signature"]
    assert verify("GET", "/ap/alerts?page=1", get, None, keys, now=NOW) == KEY_ID


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h, b: (h, b.replace(b"Create", b"Delete")), "does not match its Digest"),
        (lambda h, b: ({**h, "Digest": "SHA-256=" + "A" * 43 + "="}, b),
         "does not match its Digest"),
        (lambda h, b: ({**h, "Host": "evil.example"}, b), "signature does not match"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "Signature"}, b), "not signed"),
        (lambda h, b: ({**h, "Signature": h["Signature"].replace("rsa-sha256", "hmac-sha1")}, b),
         "unsupported signature algorithm"),
        (lambda h, b: ({**h, "Signature": h["Signature"].replace(" digest content-type", "")}, b),
         "does not cover the body"),
        (lambda h, b: ({**h, "Signature": h["Signature"].replace("(request-target) ", "")}, b),
         "does not cover (request-target)"),
    ],
)  # fmt: skip
def test_tampering_is_refused(change: object, reason: str) -> None:
    h, b = change(signed(), BODY)  # type: ignore[operator]
    with pytest.raises(SignatureError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        verify("POST", "/inbox", h, b, keys, now=NOW)


def test_another_path_or_method_does_not_verify() -> None:
    with pytest.raises(SignatureError, match="signature does not match"):
        verify("POST", "/users/alerts/inbox", signed(), BODY, keys, now=NOW)
    with pytest.raises(SignatureError, match="signature does not match"):
        verify("PUT", "/inbox", signed(), BODY, keys, now=NOW)


def test_stale_and_future_dates_are_refused() -> None:
    with pytest.raises(SignatureError, match="too old"):
        verify("POST", "/inbox", signed(at=NOW - timedelta(hours=13)), BODY, keys, now=NOW)
    with pytest.raises(SignatureError, match="future"):
        verify("POST", "/inbox", signed(at=NOW + timedelta(hours=2)), BODY, keys, now=NOW)
    # Within the window (clocks differ): accepted.
    assert verify("POST", "/inbox", signed(at=NOW - timedelta(hours=11)), BODY, keys, now=NOW)


def test_a_signature_by_another_key_is_refused() -> None:
    h = sign("POST", URL, BODY, KEY_ID, OTHER_PRIVATE, now=NOW)  # claims our keyId
    with pytest.raises(SignatureError, match="signature does not match"):
        verify("POST", "/inbox", h, BODY, keys, now=NOW)
    with pytest.raises(SignatureError, match="could not be read"):
        verify("POST", "/inbox", signed(), BODY, lambda _k: "not a key", now=NOW)
