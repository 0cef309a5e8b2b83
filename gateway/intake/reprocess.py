"""Reprocess: run a stored rejected or failed message again through today's mappings.

Both outcomes are kept: the stored message keeps its status, and the attempt is a new
messages row on channel ``reprocess`` whose ``reprocessed_from`` names it. The attempt goes
through the channel's own intake adapter (FHIR or HL7 v2) and the live pipeline's parts (its
store and new-version hook), with the mappings given; unlike a sender's resend, it is never
answered with the answer the message was given before (``Steps.replays``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError, InvalidMessage, NotFound
from gateway.intake.fhir import ReferralIntake
from gateway.intake.hl7v2 import V2Intake
from gateway.intake.pipeline import InboundMessage, Outcome, Pipeline, Steps
from gateway.mapping.engine import Mapping
from gateway.store import message_search

#: What may be run again: messages the gateway refused or failed on.
REPROCESSABLE = ("rejected", "failed")
CHANNEL = "reprocess"


@dataclass(frozen=True)
class Attempt:
    """What running one stored message again did."""

    original_id: int
    #: accepted, rejected or failed (a new row), unchanged (the record was stored already).
    outcome: str
    message_id: int | None = None
    referral_id: str | None = None
    version: int | None = None
    problem: str | None = None


class _Again(Pipeline):
    """The live pipeline's parts with the mappings given; never replays an earlier answer."""

    def __init__(self, live: Pipeline, mappings: dict[str, Mapping]) -> None:
        # Whatever the live pipeline holds (store, new-version hook, routing) is used as is.
        self.__dict__.update(vars(live))
        self.mappings = mappings
        self.refused: tuple[int, str] | None = None
        self.outcome: Outcome | None = None

    def take(self, message: InboundMessage, steps: Steps) -> Outcome:
        """Take the message as intake would, but never as a resend of a refused message."""
        steps.replays = False
        self.outcome = super().take(message, steps)
        return self.outcome

    def refuse(self, message: InboundMessage, error: GatewayError, status: str = "rejected") -> int:
        """Keep the refused attempt, noting its row."""
        kept = super().refuse(message, error, status)
        self.refused = (kept, status)
        return kept


class Reprocessor:
    """Runs stored messages again through the live intakes' adapters and ``mappings``."""

    def __init__(
        self, intake: ReferralIntake, v2intake: V2Intake, mappings: dict[str, Mapping]
    ) -> None:
        self.intake = intake
        self.v2intake = v2intake
        self.mappings = mappings

    def run(self, message_id: int) -> Attempt:
        """Run one stored message again; NotFound or InvalidMessage when it cannot be."""
        db = self.intake.db
        stored = message_search.message(db, message_id)
        if stored is None:
            raise NotFound(f"no stored message {message_id}", expression="id")
        if stored["status"] not in REPROCESSABLE:
            raise InvalidMessage(
                f"message {message_id} was {stored['status']}; only rejected or failed"
                " messages are reprocessed",
                expression="id",
            )
        if stored["body_truncated"]:
            raise InvalidMessage(
                f"message {message_id} was kept only in part (it was over the size limit)",
                expression="id",
            )
        mapping = self.mappings.get(stored["source"])
        if mapping is None:
            raise InvalidMessage(f"no mapping for source {stored['source']}", expression="source")
        again = _Again(self.intake.pipeline, self.mappings)
        problem = self._take(again, mapping, stored)
        attempt = _attempt(message_id, again, problem)
        if attempt.message_id is not None:
            message_search.set_reprocessed_from(db, attempt.message_id, message_id)
        return attempt

    def _take(self, again: _Again, mapping: Mapping, stored: dict[str, Any]) -> str | None:
        """Run the body through its channel's adapter; the refusal's text, if any."""
        body, source = bytes(stored["body"]), stored["source"]
        if mapping.compiled.format == "hl7v2":
            v2 = copy.copy(self.v2intake)
            v2.pipeline = again
            v2.handle(source, body, CHANNEL)
            error = again.outcome.error if again.outcome is not None else None
            return None if error is None else error.message
        fhir = copy.copy(self.intake)
        fhir.pipeline = again
        try:
            fhir.receive(source, body, stored["content_type"], channel=CHANNEL)
        except GatewayError as exc:
            return exc.message
        return None


def _attempt(original_id: int, again: _Again, problem: str | None) -> Attempt:
    """The attempt as the pipeline left it: a refused row, a new version, or nothing new."""
    if again.refused is not None:
        kept, status = again.refused
        return Attempt(original_id, status, kept, problem=problem)
    outcome = again.outcome
    stored = outcome.stored if outcome is not None else None
    if stored is None:  # the store was away: nothing kept
        return Attempt(original_id, "not-run", problem=problem or "the store is unavailable")
    if stored.repeat is not None:
        return Attempt(original_id, "unchanged", None, stored.referral_id, stored.version)
    made = message_search.message_of_version(again.db, stored.referral_id, stored.version)
    return Attempt(original_id, "accepted", made, stored.referral_id, stored.version)
