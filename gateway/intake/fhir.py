"""FHIR referral intake: decode, check and map a message, then the pipeline stores it.

The thin adapter between the FHIR channels (``$process-message``, transaction and batch
Bundles, ServiceRequest create, and pull) and ``gateway.intake.pipeline``: it knows the
shapes a FHIR referral comes in and raises the pipeline's refusal, as a domain error, for
the HTTP edge to answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError, InvalidMessage, NotSupported
from gateway.fhir.body import decode_body
from gateway.fhir.structure import check_resource
from gateway.intake.journey import Journey
from gateway.intake.pipeline import InboundMessage, Pipeline, Steps
from gateway.mapping.engine import Mapping
from gateway.store.database import Database
from gateway.store.referrals import Stored

BARS_EVENTS = "https://fhir.nhs.uk/CodeSystem/message-events-bars"
BARS_REQUEST = "servicerequest-request"
SHAPES = ("message", "transaction", "batch", "ServiceRequest")


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


def _sender_id_of(message: InboundMessage) -> str | None:
    """The sender's id of a refused message whose body decodes, else None (best effort)."""
    try:
        resource = decode_body(message.body, message.content_type)
        return source_message_id(resource) if isinstance(resource, dict) else None
    except Exception:  # a body too broken to read has no id to keep
        return None


class _FhirSteps(Steps):
    """One FHIR message's translation, keeping the parsed resource for the answer."""

    def __init__(
        self, mappings: dict[str, Mapping], message: InboundMessage, expected: tuple[str, ...]
    ) -> None:
        self.mappings = mappings
        self.message = message
        self.expected = expected
        self.resource: dict[str, Any] | None = None
        self.shape = ""

    def translate(self) -> dict[str, Any]:
        """Decode, check and map the message; its sender's id is noted on the message."""
        message = self.message
        try:
            resource, record, shape = translate_message(
                self.mappings, message.source, message.body, message.content_type, self.expected
            )
        except GatewayError:
            # Kept with the refusal, so an operator finds the message by the sender's id.
            message.source_message_id = _sender_id_of(message)
            raise
        message.source_message_id = source_message_id(resource)
        self.resource, self.shape = resource, shape
        return record


class ReferralIntake:
    """Receives FHIR referrals for every source with a mapping, through the pipeline."""

    def __init__(
        self, db: Database, mappings: dict[str, Mapping], journey: Journey | None = None
    ) -> None:
        self.pipeline = Pipeline(db, mappings, journey)

    @property
    def db(self) -> Database:
        """The store the pipeline writes to."""
        return self.pipeline.db

    def receive(
        self,
        source: str,
        body: bytes,
        content_type: str | None,
        *,
        channel: str,
        expected: tuple[str, ...] = SHAPES,
        success_status: int = 200,
        request_id: str | None = None,
        correlation_id: str | None = None,
        over_limit: GatewayError | None = None,
    ) -> Received:
        """Take one message end to end, or raise its refusal once the message is kept.

        ``over_limit``: the refusal of a body read only up to the limit (kept truncated).
        """
        message = InboundMessage(
            channel=channel,
            source=source,
            body=body,
            content_type=content_type,
            request_id=request_id,
            correlation_id=correlation_id,
            truncated=over_limit is not None,
            success_status=success_status,
        )
        if over_limit is not None:
            self.pipeline.refuse(message, over_limit)
            raise over_limit
        steps = _FhirSteps(self.pipeline.mappings, message, expected)
        outcome = self.pipeline.take(message, steps)
        if outcome.error is not None:
            raise outcome.error
        if outcome.stored is None:  # pragma: no cover - take stores or refuses
            raise RuntimeError("the pipeline neither stored nor refused the message")
        resource, shape = steps.resource, steps.shape
        if resource is None:  # a withdrawal taken from its partial record
            resource = decode_body(body, content_type)
            shape = shape_of(resource)
        return Received(resource, outcome.stored, shape)
