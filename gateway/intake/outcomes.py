"""Outcome intake: a platform's outcome is checked, stored, and its write-back queued at once.

The adapter behind POST /referrals/<id>/outcomes: the channel passes the store, the
destinations, the platform, the referral id and the body to ``take_outcome``.

Nothing is sent inside the request: the store (gateway/store/outcomes.py) commits the outcome
and its write-back's outbox item in one transaction, and a worker delivers it after commit.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from marshmallow import ValidationError

from gateway.errors import InvalidContent, InvalidMessage
from gateway.outbound.destinations import Destinations
from gateway.record.outcome import OutcomeRecord
from gateway.store.database import Database
from gateway.store.outcomes import Taken, record_outcome

_SCHEMA = OutcomeRecord()


def parse_outcome(body: bytes) -> dict[str, Any]:
    """The outcome as JSON data, checked against the outcome record (errors name the field)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidMessage("the body must be a JSON object (an outcome record)")
    try:
        _SCHEMA.load(data)
    except ValidationError as exc:
        where, message = _first_error(exc.messages)
        raise InvalidContent(f"{where}: {message}", expression=where) from None
    return data


def _first_error(messages: Any, prefix: str = "") -> tuple[str, str]:
    """The first (path, message) in marshmallow's nested error dict."""
    if isinstance(messages, dict):
        key = next(iter(messages))
        path = f"{prefix}.{key}" if prefix else str(key)
        if key == "_schema":
            path = prefix or "outcome"
        return _first_error(messages[key], path)
    if isinstance(messages, list) and messages:
        first = messages[0]
        return _first_error(first, prefix) if isinstance(first, dict) else (prefix, str(first))
    return prefix, str(messages)


def writeback_kind(destinations: Destinations, source: str) -> str | None:
    """The outbox kind that carries this source's outcomes back, or None if not configured."""
    target = destinations.writeback.get(source)
    if target is None:
        return None
    return "v2-writeback" if target.mllp else "fhir-writeback"


def take_outcome(
    db: Database, destinations: Destinations, platform: str, referral_id: str, body: bytes
) -> Taken:
    """Store one outcome and queue its write-back; a resend changes nothing."""
    outcome = parse_outcome(body)
    digest = hashlib.sha256(orjson.dumps(outcome, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return record_outcome(
        db,
        platform,
        referral_id,
        outcome,
        digest,
        lambda source: writeback_kind(destinations, source),
    )
