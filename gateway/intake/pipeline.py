"""The one intake pipeline: receive, keep, translate, store, answer, and the one refusal path.

Every referral channel (FHIR over HTTP and pull, HL7 v2 over HTTP and MLLP) hands a received
message to ``Pipeline.take`` with its ``Steps``: how to translate it and how to answer it.
The pipeline does the rest, the same way for all: a withdrawal of a held referral is taken
from its partial record, the record is routed and checked for consent (``Journey``), stored
with the answer it will be given and where it goes, and a
message that fails any step is kept raw as rejected (or failed, when the fault is ours) with
its answer, by ``Pipeline.refuse``, before the answer goes back. Nothing is answered as
accepted before it is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError, InvalidMessage, StoreUnavailable
from gateway.intake.journey import Journey
from gateway.mapping.engine import Mapping
from gateway.metrics_hooks import counted_intake
from gateway.store.database import Database
from gateway.store.identity import content_digest
from gateway.store.messages import KEPT_PREFIX, InboundMessage, answer_given, store_rejected
from gateway.store.referrals import Apply, Stored, store_referral
from gateway.withdrawal import is_withdrawal, names_held_referral, withdrawal

__all__ = ["KEPT_PREFIX", "InboundMessage", "InternalFault", "Outcome", "Pipeline", "Steps"]

log = logging.getLogger(__name__)


class InternalFault(GatewayError):
    """A fault in the gateway itself, not in the message: kept as failed, answered 500 (AR)."""

    status = 500
    issue_code = "exception"


class Steps:
    """What one channel does with one message; the pipeline does the rest."""

    #: An identical resend of a refused message gets the answer it was given before.
    replays = False

    def translate(self) -> dict[str, Any]:
        """The message's record, or a GatewayError (``partial_record`` for a withdrawal)."""
        raise NotImplementedError

    def answer(self, error: GatewayError | None) -> bytes | None:
        """The answer kept with the message (an ACK), or None where the channel keeps none."""
        return None

    def key_reused(self) -> GatewayError:
        """The refusal of a sender's message id already accepted for other content."""
        return InvalidMessage("the message id was already accepted for a different message")


@dataclass(frozen=True)
class Outcome:
    """What the pipeline did with one message: what was stored, or the refusal; the answer."""

    stored: Stored | None
    error: GatewayError | None
    response: bytes | None


class Pipeline:
    """The store, the mappings and the new-version hook, and the one path through them."""

    def __init__(
        self, db: Database, mappings: dict[str, Mapping], journey: Journey | None = None
    ) -> None:
        self.db = db
        self.mappings = mappings
        # Without one, consent is still honoured: every platform, no webhooks configured.
        self.journey = journey or Journey()

    @counted_intake
    def take(self, message: InboundMessage, steps: Steps) -> Outcome:
        """Translate, store and answer one message; any failure is kept before it is answered."""
        try:
            record, apply = _translated(steps)
        except GatewayError as exc:
            return self._refused(message, steps, exc)
        except Exception as exc:
            return self._fault(message, steps, exc)
        message.response = steps.answer(None)
        try:
            # A withdrawal stays where the referral is; anything else is routed afresh.
            placed = None if apply is not None else self.journey.place(record)
            stored = store_referral(
                self.db, message, record, content_digest(record), self.journey, apply, placed
            )
        except StoreUnavailable as exc:  # not kept: the sender resends later
            return Outcome(None, exc, steps.answer(exc))
        except GatewayError as exc:  # another person, or a withdrawal of nothing held
            return self._refused(message, steps, exc)
        except Exception as exc:
            return self._fault(message, steps, exc)
        if stored.repeat == "key-reused":
            return self._refused(message, steps, steps.key_reused())
        log.info(
            "message %s from %s on %s: record %s v%d (%s)",
            message.source_message_id,
            message.source,
            message.channel,
            stored.referral_id,
            stored.version,
            stored.repeat or "new",
        )
        response = message.response
        if stored.repeat == "resend" and stored.response is not None:
            response = stored.response  # the answer the first copy was given
        return Outcome(stored, None, response)

    def refuse(self, message: InboundMessage, error: GatewayError, status: str = "rejected") -> int:
        """Keep a refused message with its problem and answer; its id (logs ids, never content)."""
        problem = {
            "code": error.issue_code,
            "location": error.expression or "",
            "message": error.message,
        }
        message_id = store_rejected(self.db, message, error.status, problem, status=status)
        log.warning(
            "message %d from %s on %s %s: %s at %s",
            message_id,
            message.source,
            message.channel,
            status,
            error.issue_code,
            error.expression,
        )
        return message_id

    def _refused(
        self, message: InboundMessage, steps: Steps, error: GatewayError, status: str = "rejected"
    ) -> Outcome:
        """The refusal kept and answered (the earlier answer again for an identical resend)."""
        if steps.replays and status == "rejected":
            try:
                given = answer_given(self.db, message)
            except StoreUnavailable as exc:  # nothing kept: the sender resends later
                return Outcome(None, exc, steps.answer(exc))
            if given is not None:
                return Outcome(None, error, given)
        message.response = steps.answer(error)
        try:
            self.refuse(message, error, status)
        except StoreUnavailable as exc:
            return Outcome(None, exc, steps.answer(exc))
        return Outcome(None, error, message.response)

    def _fault(self, message: InboundMessage, steps: Steps, exc: Exception) -> Outcome:
        """A fault of ours: logged, kept as failed, answered as an internal fault."""
        log.exception("fault on %s message from %s", message.channel, message.source)
        fault = InternalFault("the gateway could not process this message; it has been kept")
        fault.__cause__ = exc
        return self._refused(message, steps, fault, status="failed")


def _translated(steps: Steps) -> tuple[dict[str, Any], Apply | None]:
    """The record and, for a cancellation or delete, how it applies to the held referral."""
    try:
        record = steps.translate()
    except GatewayError as exc:
        # A cancellation or delete naming a held referral needs nothing else.
        partial = getattr(exc, "partial_record", None)
        if partial is None or not names_held_referral(partial):
            raise
        return partial, withdrawal(partial, complete=False)
    return record, withdrawal(record, complete=True) if is_withdrawal(record) else None
