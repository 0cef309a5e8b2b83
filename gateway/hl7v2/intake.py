"""HL7 v2 referral intake: parse, de-duplicate, translate, store, acknowledge.

Every message gets an ACK and nothing is acknowledged AA before it is committed. A message
that fails is kept raw with the AE/AR it was answered with, so an identical resend gets
the same answer; an accepted message's control id (MSH-3, MSH-4, MSH-10) is claimed, so a
resend gets the original ACK and stores nothing new.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from sqlalchemy import Table, bindparam, select

from gateway.errors import GatewayError, InvalidMessage, NotSupported, StoreUnavailable
from gateway.hl7v2.ack import ack_code, build_ack
from gateway.hl7v2.er7 import DEFAULT_LIMITS, Limits, V2Message, parse, require_type
from gateway.hl7v2.strict import validate_structure
from gateway.mapping.engine import Mapping
from gateway.referral import Intake, InternalFault, content_sha256
from gateway.store.messages import InboundMessage, store_rejected
from gateway.store.models import Message
from gateway.store.referrals import store_referral
from gateway.withdrawal import is_withdrawal, names_held_referral, withdrawal

log = logging.getLogger(__name__)
_MESSAGES = cast(Table, Message.__table__)
_REPLAY_BASE = (
    select(_MESSAGES.c.response)
    .where(
        _MESSAGES.c.source == bindparam("source"),
        _MESSAGES.c.body_sha256 == bindparam("sha"),
        _MESSAGES.c.response.is_not(None),
        _MESSAGES.c.status != "failed",
    )
    .order_by(_MESSAGES.c.id.desc())
    .limit(1)
)
# Built once: building a statement per message cost more than running it.
_REPLAY = _REPLAY_BASE.where(_MESSAGES.c.control_id == bindparam("cid"))
_REPLAY_NO_ID = _REPLAY_BASE.where(_MESSAGES.c.control_id.is_(None))
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


class V2Intake(Intake):
    """Receives HL7 v2 messages for every source with an hl7v2 mapping."""

    #: HL7 v2 limits (segments, repetitions, field length); set from the configuration.
    limits: Limits = DEFAULT_LIMITS

    def handle(self, source: str, raw: bytes, channel: str) -> bytes:
        """The ACK for one message; never raises."""
        inbound = InboundMessage(channel=channel, source=source, body=raw, content_type=MEDIA_TYPE)
        parsed: V2Message | None = None
        try:
            parsed = parse(raw, self.limits)
            inbound.control_id = parsed.control_id or None
            inbound.source_message_id = parsed.control_id or None
            inbound.dedup_key = dedup_key(parsed) if parsed.control_id else None
            apply = None
            try:
                record = translate_parsed(self.mappings, source, parsed, raw)
            except GatewayError as exc:
                # A cancellation naming a held referral needs nothing else.
                partial = getattr(exc, "partial_record", None)
                if partial is None or not names_held_referral(partial):
                    raise
                record, apply = partial, withdrawal(partial, complete=False)
            else:
                if is_withdrawal(record):
                    apply = withdrawal(record, complete=True)
        except GatewayError as exc:
            # The same bytes get the same answer as before (an accepted resend is found again
            # when it is stored, below, so a new message pays for no extra look-up).
            replay = self._replay(inbound)
            if replay is not None:
                return replay
            return self._refuse(inbound, parsed, exc)
        except Exception:
            log.exception("fault on %s message from %s", channel, source)
            fault = InternalFault("the gateway could not process this message; it has been kept")
            return self._refuse(inbound, parsed, fault, status="failed")
        inbound.response = build_ack(parsed)
        try:
            stored = store_referral(
                self.db, inbound, record, content_sha256(record), self.on_stored, apply
            )
        except StoreUnavailable as exc:
            return build_ack(parsed, exc)
        except GatewayError as exc:  # another person, or a withdrawal of nothing held
            replay = self._replay(inbound)  # refused before: the same refusal again
            if replay is not None:
                return replay
            return self._refuse(inbound, parsed, exc)
        if stored.repeat == "key-reused":
            replay = self._replay(inbound)  # refused before: the same refusal again
            if replay is not None:
                return replay
            error = InvalidMessage(
                "MSH-10 was already accepted for a different message; use a new control id",
                expression="MSH.10",
            )
            return self._refuse(inbound, parsed, error)
        if stored.repeat == "resend" and stored.response is not None:
            return stored.response
        log.info(
            "v2 message %s from %s: record %s v%d (%s)",
            inbound.control_id,
            source,
            stored.referral_id,
            stored.version,
            stored.repeat or "new",
        )
        return inbound.response

    def _replay(self, inbound: InboundMessage) -> bytes | None:
        """The answer already given to this exact message (same control id and bytes)."""
        query = _REPLAY_NO_ID if inbound.control_id is None else _REPLAY
        params = {"source": inbound.source, "sha": inbound.sha256, "cid": inbound.control_id}
        with self.db.snapshot() as conn:
            response: bytes | None = conn.execute(query, params).scalar()
        return response

    def _refuse(
        self,
        inbound: InboundMessage,
        parsed: V2Message | None,
        error: GatewayError,
        status: str = "rejected",
    ) -> bytes:
        """Keep the message with its AE/AR, then return that ACK (AR if it cannot be kept)."""
        ack = build_ack(parsed, error)
        inbound.response = ack
        problem = {
            "code": error.issue_code,
            "location": error.expression or "",
            "message": error.message,
        }
        try:
            message_id = store_rejected(self.db, inbound, error.status, problem, status=status)
        except StoreUnavailable as exc:
            return build_ack(parsed, exc)
        log.warning(
            "v2 message %d from %s answered %s: %s at %s",
            message_id,
            inbound.source,
            ack_code(error),
            error.issue_code,
            error.expression,
        )
        return ack
