"""Webhooks: each new record version is POSTed, signed, to the platform it is routed to.

The request
    ``POST <platform webhook URL>`` with the record envelope as compact JSON
    (``{id, version, status, source, referral_identifier, received_at, record}``) and headers:

    - ``Content-Type: application/json``
    - ``X-Gateway-Delivery``: the outbox item id; the same on every retry of one delivery, so a
      platform de-duplicates on it (or on the envelope's ``id`` and ``version``).
    - ``X-Gateway-Event``: ``record-version`` (the body is the record envelope), or a notice
      without the record: ``referral-moved`` (an update routed it to another hub) or
      ``referral-held`` (the gateway now holds it, e.g. consent withdrawn); the notice body is
      ``{event, id, version, reason}`` (docs/routing.md).
    - ``X-Gateway-Timestamp``: when this attempt was signed, in Unix seconds.
    - ``X-Gateway-Signature: sha256=<hex>``: HMAC-SHA256, keyed with the platform's shared
      secret, over the bytes ``<timestamp> "." <body>`` (the timestamp header's ASCII digits,
      one full stop, then the raw request body exactly as received, before any JSON parsing).

Verifying (what a platform does; ``verify_signature`` below does exactly this)
    1. Read the raw body and the two headers.
    2. Reject a timestamp more than five minutes from your clock (replay protection).
    3. Compute ``hex(HMAC_SHA256(secret, timestamp + "." + body))`` and compare it with the
       header's value in constant time. The header may carry several comma-separated
       ``sha256=`` values; accept when any matches (room for rotating secrets).

Answers
    2xx is delivered. 408, 425, 429, 5xx, timeouts and connection failures are retried later
    (Retry-After, in seconds or as an HTTP date, is honoured). Redirects are not followed and,
    like any other 4xx, are permanent: the item goes to the dead-letter list with the first
    4 KB of the answer kept. Failure reasons (which the worker logs) never carry the body.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import orjson
import requests

from gateway.errors import PermanentDeliveryError, TransientDeliveryError
from gateway.outbound.destinations import Destinations, Platform
from gateway.outbound.retry import retry_after
from gateway.store.outbox import Claimed

EVENT = "record-version"
SCHEME = "sha256"
#: How much of a destination's answer is kept on the outbox item.
RESPONSE_LIMIT = 4096
#: Retry-After values beyond this are cut to it (a day), so one answer cannot park an item.
_TRANSIENT = frozenset({408, 425, 429})
#: The signing clock (tests replace it).
_clock = time.time


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` keyed with ``secret``."""
    return hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """True when ``header`` (``sha256=<hex>``, comma-separated for several) signs this body at
    this timestamp with ``secret``, and the timestamp is within ``tolerance`` seconds of now."""
    if not secret or not timestamp.isascii() or not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    expected = signature(secret, timestamp, body).encode("ascii")
    matched = False
    for part in header.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == SCHEME:
            # Compare every candidate, so the time taken says nothing about which matched.
            matched |= hmac.compare_digest(value.strip().encode("utf-8", "replace"), expected)
    return matched


def _kept(response: requests.Response) -> str:
    """The first 4 KB of the answer's body, as text (kept with the item); the rest unread."""
    data = bytearray()
    try:
        for chunk in response.iter_content(1024):
            data += chunk
            if len(data) >= RESPONSE_LIMIT:
                break
    except requests.RequestException:
        pass  # a body cut short still says something; keep what arrived
    finally:
        response.close()
    return bytes(data[:RESPONSE_LIMIT]).decode("utf-8", "replace")


class WebhookDeliverer:
    """Delivers ``webhook`` outbox items (destination ``webhook:<platform>``)."""

    def __init__(self, destinations: Destinations, session: requests.Session | None = None) -> None:
        self.destinations = destinations
        self.session = session or requests.Session()

    def _platform(self, item: Claimed) -> Platform:
        prefix, _, name = item.destination.partition(":")
        platform = self.destinations.platforms.get(name) if prefix == "webhook" else None
        if platform is None:
            raise PermanentDeliveryError(f"no platform is configured for {item.destination}")
        return platform

    def __call__(self, item: Claimed) -> str | None:
        """POST the item's envelope; the HTTP status when delivered, else a delivery error."""
        platform = self._platform(item)
        secret = platform.secret
        if not secret:
            raise PermanentDeliveryError(
                f"platform {platform.name}: secret not configured ({platform.secret_env} is empty)"
            )
        body = orjson.dumps(item.payload)
        timestamp = str(int(_clock()))
        headers = {
            "Content-Type": "application/json",
            "X-Gateway-Delivery": str(item.id),
            "X-Gateway-Event": str(item.payload.get("event", EVENT)),
            "X-Gateway-Timestamp": timestamp,
            "X-Gateway-Signature": f"{SCHEME}={signature(secret, timestamp, body)}",
        }
        where = f"platform {platform.name}"
        try:
            response = self.session.post(
                platform.webhook,
                data=body,
                headers=headers,
                timeout=platform.timeout,
                allow_redirects=False,
                stream=True,  # read no more of the answer than is kept
            )
        except requests.Timeout:
            raise TransientDeliveryError(
                f"{where}: no answer within {platform.timeout:g} s"
            ) from None
        except requests.ConnectionError as exc:
            raise TransientDeliveryError(
                f"{where}: connection failed ({type(exc).__name__})"
            ) from None
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
        ) as exc:
            raise PermanentDeliveryError(
                f"{where}: bad webhook URL ({type(exc).__name__})"
            ) from None
        except requests.RequestException as exc:
            raise TransientDeliveryError(
                f"{where}: request failed ({type(exc).__name__})"
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            response.close()
            return str(status)
        reason = f"{where} answered HTTP {status}"
        if status in _TRANSIENT or status >= 500:
            raise TransientDeliveryError(
                reason,
                retry_after=retry_after(response.headers.get("Retry-After")),
                response=_kept(response),
            )
        if 300 <= status < 400:
            reason += " (redirects are not followed; fix the webhook URL)"
        raise PermanentDeliveryError(reason, response=_kept(response))
