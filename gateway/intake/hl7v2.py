"""HL7 v2 referral intake: parse and map a message, then the pipeline stores and answers it.

The thin adapter between the HL7 v2 channels (POST /hl7v2 and MLLP) and
``gateway.intake.pipeline``. Every message gets an ACK, and nothing is acknowledged AA
before it is committed. A refused message is kept raw with the AE/AR it was answered with,
so an identical resend gets the same answer; an accepted message's control id (MSH-3, MSH-4,
MSH-10) is claimed, so a resend gets the original ACK and stores nothing new.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway.errors import GatewayError, InvalidMessage, NotSupported
from gateway.hl7v2 import batch
from gateway.hl7v2.ack import build_ack
from gateway.hl7v2.er7 import envelope, parse, read_header, require_type
from gateway.hl7v2.limits import DEFAULT_LIMITS, Limits
from gateway.hl7v2.message import V2Message
from gateway.hl7v2.strict import validate_structure
from gateway.intake.journey import Journey
from gateway.intake.pipeline import InboundMessage, Outcome, Pipeline, Steps
from gateway.mapping.engine import Mapping
from gateway.store.database import Database

MEDIA_TYPE = "x-application/hl7-v2+er7"


def translate_v2(
    mappings: dict[str, Mapping], source: str, raw: bytes
) -> tuple[V2Message, dict[str, Any]]:
    """Parse and map one v2 message for ``source`` (pure: stores nothing)."""
    message = parse(raw)
    return message, translate_parsed(mappings, source, message, raw)


def translate_parsed(
    mappings: dict[str, Mapping], source: str, message: V2Message, raw: bytes
) -> dict[str, Any]:
    """The record for an already parsed message, after type and (strict) structure checks."""
    mapping = mappings[source]
    if mapping.compiled.format != "hl7v2":
        raise NotSupported(f"source {source} does not send HL7 v2", expression="MSH.9")
    require_type(message, mapping.accepts)
    if mapping.compiled.strict:
        validate_structure(raw, message)
    return mapping.translate(message.tree)


def dedup_key(message: V2Message) -> str:
    """Sending application, sending facility and control id: the sender's message identity."""
    return "|".join((message.value("MSH", 3), message.value("MSH", 4), message.control_id))[:600]


class _V2Steps(Steps):
    """One v2 message: parsed (its control id noted), mapped, and answered with an ACK."""

    replays = True

    def __init__(
        self, mappings: dict[str, Mapping], limits: Limits, message: InboundMessage
    ) -> None:
        self.mappings = mappings
        self.limits = limits
        self.message = message
        self.parsed: V2Message | None = None

    def translate(self) -> dict[str, Any]:
        """Parse, note the sender's identity of the message, then map it."""
        message = self.message
        parsed = parse(message.body, self.limits)
        self.parsed = parsed
        message.control_id = parsed.control_id or None
        message.source_message_id = parsed.control_id or None
        message.dedup_key = dedup_key(parsed) if parsed.control_id else None
        return translate_parsed(self.mappings, message.source, parsed, message.body)

    def answer(self, error: GatewayError | None) -> bytes:
        """The ACK: AA without an error, else the AE or AR that names it."""
        return build_ack(self.parsed, error)

    def key_reused(self) -> GatewayError:
        """An MSH-10 already accepted for another message."""
        return InvalidMessage(
            "MSH-10 was already accepted for a different message; use a new control id",
            expression="MSH.10",
        )


class V2Intake:
    """Receives HL7 v2 messages for every source with an hl7v2 mapping, through the pipeline."""

    def __init__(
        self,
        db: Database,
        mappings: dict[str, Mapping],
        journey: Journey | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.pipeline = Pipeline(db, mappings, journey)
        #: HL7 v2 limits (segments, repetitions, field length), from the configuration.
        self.limits = limits

    @property
    def db(self) -> Database:
        """The store the pipeline writes to."""
        return self.pipeline.db

    def receive(self, source: str, raw: bytes, channel: str) -> bytes:
        """The answer to what a sender sent: a batch acknowledgement for a batch, else the ACK."""
        if envelope(raw) == "batch":
            return batch.answer(lambda message: self.handle(source, message, channel), raw)
        return self.handle(source, raw, channel)

    def handle(self, source: str, raw: bytes, channel: str) -> bytes:
        """The ACK for one message; a refusal is an ACK, never an exception."""
        response = self.take(source, raw, channel).response
        if response is None:  # pragma: no cover - take always answers
            raise RuntimeError("the pipeline gave no ACK")
        return response

    def take(self, source: str, raw: bytes, channel: str) -> Outcome:
        """What the pipeline did with one message (stored or refused), with its ACK."""
        message = InboundMessage(channel=channel, source=source, body=raw, content_type=MEDIA_TYPE)
        steps = _V2Steps(self.pipeline.mappings, self.limits, message)
        outcome = self.pipeline.take(message, steps)
        if outcome.response is None:  # pragma: no cover - every v2 step answers
            return replace(outcome, response=steps.answer(outcome.error))
        return outcome

    def refuse_unread(
        self,
        source: str,
        body: bytes,
        content_type: str | None,
        *,
        channel: str,
        error: GatewayError,
        truncated: bool,
    ) -> bytes:
        """Keep a message refused before it was read (too large, not HL7 v2) with its ACK.

        The ACK echoes the MSH of a ``truncated`` body's first bytes; raises StoreUnavailable
        when the message cannot be kept.
        """
        ack = build_ack(read_header(body) if truncated else None, error)
        message = InboundMessage(
            channel=channel,
            source=source,
            body=body,
            content_type=content_type,
            truncated=truncated,
            response=ack,
        )
        self.pipeline.refuse(message, error)
        return ack
