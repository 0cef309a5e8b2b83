"""Webhook delivery against a mocked platform (responses): signing, status classes, Retry-After."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import orjson
import pytest
import requests
import responses

from gateway.errors import PermanentDeliveryError, TransientDeliveryError
from gateway.outbound.destinations import Destinations, Platform
from gateway.outbound.retry import MAX_RETRY_AFTER, retry_after
from gateway.outbound.webhook import WebhookDeliverer, signature, verify_signature
from gateway.store.outbox import Claimed

URL = "https://platform.example/hooks/referrals"
SECRET = "s3cret-for-tests"
ENVELOPE: dict[str, Any] = {
    "id": "ref-1",
    "version": 2,
    "status": "active",
    "source": "gp-v2",
    "referral_identifier": "GPREF1001",
    "received_at": "2026-11-02T10:15:01+00:00",
    "record": {"person": {"family_name": "Ellis", "given_name": "Margaret"}},
}


def item(destination: str = "webhook:linkly", item_id: int = 7) -> Claimed:
    """A claimed webhook item carrying ENVELOPE."""
    return Claimed(item_id, "ref-1", destination, "webhook", ENVELOPE, 1)


@pytest.fixture
def destinations(monkeypatch: pytest.MonkeyPatch) -> Destinations:
    """One platform, its secret in the environment; one whose secret variable is unset."""
    monkeypatch.setenv("LINKLY_SECRET", SECRET)
    monkeypatch.delenv("NOSECRET_SECRET", raising=False)
    return Destinations(
        platforms={
            "linkly": Platform("linkly", URL, "LINKLY_SECRET", timeout=2.0),
            "nosecret": Platform("nosecret", URL, "NOSECRET_SECRET"),
        }
    )


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    """Mocked HTTP: any request not registered fails (no real network)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def test_delivered_with_a_signature_the_platform_can_verify(
    destinations: Destinations, mock: responses.RequestsMock
) -> None:
    mock.post(URL, status=202)
    before = int(time.time())

    assert WebhookDeliverer(destinations)(item()) == "202"

    request = mock.calls[0].request
    body = request.body
    assert isinstance(body, bytes)
    assert orjson.loads(body) == ENVELOPE
    assert body == orjson.dumps(ENVELOPE)  # compact, as signed
    headers = request.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Gateway-Delivery"] == "7"
    assert headers["X-Gateway-Event"] == "record-version"
    timestamp = headers["X-Gateway-Timestamp"]
    assert before <= int(timestamp) <= int(time.time())
    header = headers["X-Gateway-Signature"]
    assert header.startswith("sha256=")
    assert verify_signature(SECRET.encode(), timestamp, body, header)
    # The documented scheme, computed independently of the module.
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    assert header == f"sha256={expected.hexdigest()}"


def test_verify_signature_rejects_tampering_staleness_and_junk() -> None:
    secret, body, ts = b"k", b'{"a":1}', "1700000000"
    good = f"sha256={signature(secret, ts, body)}"
    now = 1700000100.0
    assert verify_signature(secret, ts, body, good, now=now)
    assert not verify_signature(secret, ts, body + b" ", good, now=now)  # body changed
    assert not verify_signature(b"other", ts, body, good, now=now)  # wrong secret
    assert not verify_signature(secret, "1700000001", body, good, now=now)  # timestamp changed
    assert not verify_signature(secret, ts, body, good, now=now + 300)  # stale (400 s old)
    assert not verify_signature(secret, ts, body, good, now=now - 500)  # from the future
    assert verify_signature(secret, ts, body, good, tolerance=1000, now=now + 300)
    assert not verify_signature(secret, ts, body, "sha1=" + good[7:], now=now)
    assert not verify_signature(secret, ts, body, "", now=now)
    assert not verify_signature(secret, "not-a-number", body, good, now=now)
    assert not verify_signature(secret, ts, body, "sha256=é", now=now)
    assert not verify_signature(b"", ts, body, good, now=now)
    # Several signatures (a secret being rotated): any one matching is enough.
    assert verify_signature(secret, ts, body, f"sha256=00ff, {good}", now=now)


@pytest.mark.parametrize("status", [200, 201, 204])
def test_any_2xx_is_delivered(
    destinations: Destinations, mock: responses.RequestsMock, status: int
) -> None:
    mock.post(URL, status=status)
    assert WebhookDeliverer(destinations)(item()) == str(status)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_transient(
    destinations: Destinations, mock: responses.RequestsMock, status: int
) -> None:
    mock.post(URL, status=status, body="busy")
    with pytest.raises(TransientDeliveryError) as raised:
        WebhookDeliverer(destinations)(item())
    assert f"HTTP {status}" in raised.value.reason
    assert raised.value.response == "busy"
    assert raised.value.retry_after is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422])
def test_other_4xx_is_permanent_with_the_body_kept(
    destinations: Destinations, mock: responses.RequestsMock, status: int
) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"code": "invalid"}]}
    mock.post(URL, status=status, json=outcome)
    with pytest.raises(PermanentDeliveryError) as raised:
        WebhookDeliverer(destinations)(item())
    assert f"HTTP {status}" in raised.value.reason
    assert raised.value.response is not None
    assert orjson.loads(raised.value.response) == outcome
    assert "OperationOutcome" not in raised.value.reason  # reasons are logged: no body


def test_a_long_answer_is_kept_truncated(
    destinations: Destinations, mock: responses.RequestsMock
) -> None:
    mock.post(URL, status=400, body="x" * 10_000)
    with pytest.raises(PermanentDeliveryError) as raised:
        WebhookDeliverer(destinations)(item())
    assert raised.value.response == "x" * 4096


def test_a_redirect_is_not_followed(
    destinations: Destinations, mock: responses.RequestsMock
) -> None:
    mock.post(URL, status=301, headers={"Location": "https://elsewhere.example/"})
    with pytest.raises(PermanentDeliveryError, match="redirect"):
        WebhookDeliverer(destinations)(item())
    assert len(mock.calls) == 1


def test_retry_after_in_seconds_is_honoured(
    destinations: Destinations, mock: responses.RequestsMock
) -> None:
    mock.post(URL, status=429, headers={"Retry-After": "120"})
    with pytest.raises(TransientDeliveryError) as raised:
        WebhookDeliverer(destinations)(item())
    assert raised.value.retry_after == 120.0


def test_retry_after_as_an_http_date_is_honoured(
    destinations: Destinations, mock: responses.RequestsMock
) -> None:
    mock.post(URL, status=503, headers={"Retry-After": formatdate(time.time() + 90, usegmt=True)})
    with pytest.raises(TransientDeliveryError) as raised:
        WebhookDeliverer(destinations)(item())
    assert raised.value.retry_after is not None
    assert 80 <= raised.value.retry_after <= 91


def test_retry_after_parsing() -> None:
    now = 1_800_000_000.0
    assert retry_after(None) is None
    assert retry_after("  ") is None
    assert retry_after("soon") is None
    assert retry_after("0") == 0.0
    assert retry_after("10", now=now) == 10.0
    assert retry_after(formatdate(now - 60, usegmt=True), now=now) == 0.0  # in the past
    assert retry_after("99999999") == MAX_RETRY_AFTER


def test_a_timeout_is_transient(destinations: Destinations, mock: responses.RequestsMock) -> None:
    mock.post(URL, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(TransientDeliveryError, match="no answer within 2 s"):
        WebhookDeliverer(destinations)(item())


def test_a_connection_failure_is_transient(
    destinations: Destinations, mock: responses.RequestsMock
) -> None:
    mock.post(URL, body=requests.ConnectionError("refused"))
    with pytest.raises(TransientDeliveryError, match="connection failed"):
        WebhookDeliverer(destinations)(item())


def test_a_platform_without_a_secret_is_permanent_and_sends_nothing(
    destinations: Destinations, mock: responses.RequestsMock
) -> None:
    with pytest.raises(PermanentDeliveryError, match="secret not configured"):
        WebhookDeliverer(destinations)(item("webhook:nosecret"))
    assert len(mock.calls) == 0


def test_an_unknown_platform_is_permanent(
    destinations: Destinations, mock: responses.RequestsMock
) -> None:
    with pytest.raises(PermanentDeliveryError, match="no platform"):
        WebhookDeliverer(destinations)(item("webhook:gone"))
    assert len(mock.calls) == 0


def test_a_retry_is_signed_afresh_with_the_same_delivery_id(
    destinations: Destinations, mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    mock.post(URL, status=503)
    mock.post(URL, status=200)
    deliverer = WebhookDeliverer(destinations, session=requests.Session())
    clock = iter([1_800_000_000.0, 1_800_000_060.0])
    monkeypatch.setattr("gateway.outbound.webhook._clock", lambda: next(clock))
    with pytest.raises(TransientDeliveryError):
        deliverer(item())
    assert deliverer(item()) == "200"
    first, second = (call.request.headers for call in mock.calls)
    assert first["X-Gateway-Delivery"] == second["X-Gateway-Delivery"] == "7"
    assert first["X-Gateway-Timestamp"] == "1800000000"
    assert second["X-Gateway-Timestamp"] == "1800000060"
    assert first["X-Gateway-Signature"] != second["X-Gateway-Signature"]
