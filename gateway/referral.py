"""Referral intake: decode, check, translate and store one inbound FHIR referral.

Every channel uses this one path. A message that fails any step is kept raw as rejected
(or failed, when the fault is ours) before the error reaches the sender.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError, InvalidMessage, NotSupported, StoreUnavailable
from gateway.fhir.body import decode_body
from gateway.fhir.structure import check_resource
from gateway.mapping.engine import Mapping
from gateway.store.database import Database
from gateway.store.messages import InboundMessage, store_rejected
from gateway.store.referrals import OnStored, Stored, content_digest, store_referral
from gateway.withdrawal import is_withdrawal, names_held_referral, withdrawal

log = logging.getLogger(__name__)

BARS_EVENTS = "https://fhir.nhs.uk/CodeSystem/message-events-bars"
BARS_REQUEST = "servicerequest-request"
SHAPES = ("message", "transaction", "batch", "ServiceRequest")


class InternalFault(GatewayError):
    """A fault in the gateway itself, not in the message: kept as failed, answered 500."""

    status = 500
    issue_code = "exception"


@dataclass(frozen=True)
class Received:
    """The outcome of a successful intake: the parsed message and what was stored."""

    resource: dict[str, Any]
    stored: Stored
    shape: str


def shape_of(resource: dict[str, Any]) -> str:
    """message, transaction or batch for Bundles, else the resource type."""
    rtype = resource.get("resourceType")
    if rtype != "Bundle":
        return str(rtype)
    kind = resource.get("type")
    if kind not in ("message", "transaction", "batch"):
        raise NotSupported(
            f"Bundle type {kind!r} is not accepted; send message, transaction or batch",
            expression="Bundle.type",
        )
    return str(kind)


def _check_shape(resource: dict[str, Any], shape: str, expected: tuple[str, ...]) -> None:
    """Fail unless the message is one the endpoint takes, with the element named."""
    if shape not in expected:
        if resource.get("resourceType") == "Bundle":
            raise InvalidMessage(
                f"this endpoint takes {' or '.join(expected)}, not a {shape} Bundle",
                expression="Bundle.type",
            )
        want = "a Bundle" if "ServiceRequest" not in expected else "a ServiceRequest"
        raise InvalidMessage(
            f"resourceType {shape} is not accepted here; send {want}", expression="resourceType"
        )
    if shape == "message":
        entries = resource.get("entry") or []
        first = entries[0].get("resource", {}) if entries and isinstance(entries[0], dict) else {}
        if first.get("resourceType") != "MessageHeader":
            raise InvalidMessage(
                "a message Bundle starts with a MessageHeader", expression="Bundle.entry[0]"
            )
        _check_event(first)
    if resource.get("resourceType") == "Bundle":
        positions = [
            i
            for i, e in enumerate(resource.get("entry") or [])
            if isinstance(e, dict)
            and (e.get("resource") or {}).get("resourceType") == "ServiceRequest"
        ]
        if len(positions) > 1:
            raise NotSupported(
                "one referral per Bundle: this Bundle has several ServiceRequests",
                expression=f"Bundle.entry[{positions[1]}]",
            )


def _check_event(header: dict[str, Any]) -> None:
    """Fail unless the MessageHeader's event is a BaRS referral request, naming what is not."""
    where = "Bundle.entry[0].resource.eventCoding"
    event = header.get("eventCoding")
    if not isinstance(event, dict):
        if "eventUri" in header:
            raise NotSupported(
                f"message event {header['eventUri']!r} is not supported; send eventCoding "
                f"{BARS_EVENTS}|{BARS_REQUEST}",
                expression="Bundle.entry[0].resource.eventUri",
            )
        raise InvalidMessage(
            f"the MessageHeader has no eventCoding; send {BARS_EVENTS}|{BARS_REQUEST}",
            expression=where,
        )
    system, code = event.get("system"), event.get("code")
    if system != BARS_EVENTS:
        raise NotSupported(
            f"message event system {system!r} is not supported; send {BARS_EVENTS}",
            expression=f"{where}.system",
        )
    if code != BARS_REQUEST:
        kind = "a response" if code == "servicerequest-response" else "not a referral request"
        if isinstance(code, str) and code.startswith("booking-"):
            kind = "a booking"
        raise NotSupported(
            f"message event {code!r} is {kind}; this gateway takes referrals: send {BARS_REQUEST}",
            expression=f"{where}.code",
        )


def content_sha256(record: dict[str, Any]) -> str:
    """The hash that decides "same content": the record without its provenance."""
    return content_digest(record)


def source_message_id(resource: dict[str, Any]) -> str | None:
    """The sender's id for the message (MessageHeader id, Bundle id, or resource id)."""
    entries = resource.get("entry") or []
    if resource.get("type") == "message" and entries and isinstance(entries[0], dict):
        header = entries[0].get("resource") or {}
        if isinstance(header.get("id"), str):
            return str(header["id"])
    rid = resource.get("id")
    return rid if isinstance(rid, str) else None


def translate_message(
    mappings: dict[str, Mapping],
    source: str,
    body: bytes,
    content_type: str | None,
    expected: tuple[str, ...] = SHAPES,
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Decode, check and map one message for ``source``: (resource, record, shape).

    Pure: stores nothing. ``gateway translate``, ``check-mappings`` and intake all use it.
    """
    resource = decode_body(body, content_type)
    check_resource(resource)
    shape = shape_of(resource)
    _check_shape(resource, shape, expected)
    mapping = mappings[source]
    if shape not in mapping.accepts:
        raise NotSupported(
            f"source {source} is configured for {', '.join(mapping.accepts)}, not {shape}",
            expression="Bundle.type"
            if resource.get("resourceType") == "Bundle"
            else "resourceType",
        )
    return resource, mapping.translate(resource), shape


class Intake:
    """What every intake channel holds: the store, the mappings, and the new-version hook."""

    def __init__(
        self, db: Database, mappings: dict[str, Mapping], on_stored: OnStored | None = None
    ) -> None:
        self.db = db
        self.mappings = mappings
        self.on_stored = on_stored


class ReferralIntake(Intake):
    """Receives FHIR referrals for every source with a mapping."""

    def translate(
        self, message: InboundMessage, expected: tuple[str, ...]
    ) -> tuple[dict[str, Any], dict[str, Any], str]:
        """Decode, check and map: (resource, record, shape), or a domain error."""
        resource, record, shape = translate_message(
            self.mappings, message.source, message.body, message.content_type, expected
        )
        message.source_message_id = source_message_id(resource)
        return resource, record, shape

    def receive(self, message: InboundMessage, expected: tuple[str, ...]) -> Received:
        """Take one message end to end; on any error the raw message is kept first."""
        try:
            apply = None
            try:
                resource, record, shape = self.translate(message, expected)
            except GatewayError as exc:
                # A cancellation or delete naming a held referral needs nothing else.
                partial = getattr(exc, "partial_record", None)
                if partial is None or not names_held_referral(partial):
                    raise
                resource = decode_body(message.body, message.content_type)
                shape = shape_of(resource)
                record, apply = partial, withdrawal(partial, complete=False)
            else:
                if is_withdrawal(record):
                    apply = withdrawal(record, complete=True)
            stored = store_referral(
                self.db, message, record, content_sha256(record), self.on_stored, apply
            )
        except StoreUnavailable:
            raise
        except GatewayError as exc:
            self.reject(message, exc, "rejected")
            raise
        except Exception as exc:
            log.exception("mapping fault on %s message from %s", message.channel, message.source)
            fault = InternalFault("the gateway could not process this message; it has been kept")
            self.reject(message, fault, "failed")
            raise fault from exc
        log.info(
            "referral %s from %s: record %s v%d (%s)",
            message.source_message_id,
            message.source,
            stored.referral_id,
            stored.version,
            "new" if stored.created else "duplicate",
        )
        return Received(resource, stored, shape)

    def reject(
        self, message: InboundMessage, error: GatewayError, status: str = "rejected"
    ) -> None:
        """Keep a refused message with its problem; logs carry ids, never content."""
        problem = {
            "code": error.issue_code,
            "location": error.expression or "",
            "message": error.message,
        }
        message_id = store_rejected(self.db, message, error.status, problem, status=status)
        log.warning(
            "message %d from %s %s: %s at %s",
            message_id,
            message.source,
            status,
            error.issue_code,
            error.expression,
        )
