"""What the non-FHIR API answers, as marshmallow schemas; the OpenAPI document comes from them."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from gateway.record.model import ReferralRecord
from gateway.record.outcome import OutcomeRecord
from gateway.record.states import STATES


class Issue(Schema):
    """One problem: FHIR issue severity and code, words, and the sender's element."""

    severity = fields.String(required=True, validate=validate.OneOf(["fatal", "error", "warning"]))
    code = fields.String(required=True)
    diagnostics = fields.String()
    expression = fields.List(fields.String())
    details = fields.Dict()


class OperationOutcome(Schema):
    """Every error answer: a FHIR OperationOutcome naming the element that was wrong."""

    resourceType = fields.String(required=True, validate=validate.Equal("OperationOutcome"))
    issue = fields.List(fields.Nested(Issue), required=True)
    id = fields.String()
    meta = fields.Dict()


class ContactSummary(Schema):
    """Whether and how the person may be contacted, and their consent, read before anything."""

    may_contact = fields.String(required=True, validate=validate.OneOf(("yes", "no", "not stated")))
    preferred_method = fields.String(required=True, allow_none=True)
    methods_given = fields.List(fields.String(), required=True)
    consent = fields.String(required=True)
    interpreter_needed = fields.Boolean(required=True, allow_none=True)


class RecordEnvelope(Schema):
    """One version of a referral's record with its ids, statuses, hub and feed cursor."""

    id = fields.String(required=True)
    version = fields.Integer(required=True)
    status = fields.String(required=True)
    source = fields.String(required=True)
    referral_identifier = fields.String(required=True)
    referral_identifier_system = fields.String(required=True, allow_none=True)
    workflow_status = fields.String(required=True, validate=validate.OneOf(STATES))
    cancellation_requested = fields.Boolean(required=True)
    hub = fields.String(
        required=True, allow_none=True, metadata={"description": '"*" every platform'}
    )
    cursor = fields.String(required=True)
    received_at = fields.String(required=True)
    contact = fields.Nested(ContactSummary, required=True)
    record = fields.Nested(ReferralRecord, required=True)


class StoredOutcome(Schema):
    """One outcome as stored: its sequence (the outcome feed's cursor), who posted it, when."""

    seq = fields.String(required=True)
    referral_id = fields.String(required=True)
    platform = fields.String(required=True)
    received_at = fields.String(required=True)
    outcome = fields.Nested(OutcomeRecord, required=True)


class OutcomeList(Schema):
    """Every outcome stored for one referral, oldest first."""

    items = fields.List(fields.Nested(StoredOutcome), required=True)


class OutcomeFeed(Schema):
    """A page of the outcome feed, the cursor to ask from next, and whether there is more."""

    items = fields.List(fields.Nested(StoredOutcome), required=True)
    next = fields.String(required=True)
    more = fields.Boolean(required=True)


class Feed(Schema):
    """A page of the feed: versions after ``since``, the cursor to ask from next, and more."""

    items = fields.List(fields.Nested(RecordEnvelope), required=True)
    next = fields.String(required=True)
    more = fields.Boolean(required=True)


class OutcomeTaken(Schema):
    """What an outcome post did: the referral's status now and the deliveries queued."""

    referral_id = fields.String(required=True)
    outcome_id = fields.String(required=True)
    workflow_status = fields.String(required=True, validate=validate.OneOf(STATES))
    deliveries = fields.List(fields.String(), required=True)


class DeadLetter(Schema):
    """An outbox item given up on, with the last error and the target's last response."""

    id = fields.Integer(required=True)
    referral_id = fields.String(required=True)
    destination = fields.String(required=True)
    kind = fields.String(required=True)
    attempts = fields.Integer(required=True)
    last_error = fields.String(required=True, allow_none=True)
    response = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True)


class DeadLetters(Schema):
    """The dead-letter list."""

    items = fields.List(fields.Nested(DeadLetter), required=True)


class Replayed(Schema):
    """A dead letter queued again."""

    id = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.Equal("pending"))


class Health(Schema):
    """Liveness: the store, the outbox, the sources with a mapping (outbox counts for keys)."""

    status = fields.String(
        required=True, validate=validate.OneOf(["ok", "store unavailable", "outbox stalled"])
    )
    sources = fields.List(fields.String(), required=True)
    outbox = fields.Dict(keys=fields.String(), values=fields.Integer())


class ReferralTaken(Schema):
    """What a community referral post did: the record, its version and status, the reference
    to quote, and what the mapping could not place (the same again for a resend)."""

    id = fields.String(required=True)
    reference = fields.String(
        required=True, metadata={"description": "SP- and the record id's first 8 hex digits"}
    )
    version = fields.Integer(required=True)
    status = fields.String(required=True)
    diagnostics = fields.List(fields.Dict(), required=True)


class EvidenceWellbeing(Schema):
    """Change on one instrument: people, mean change, meaningful improvements (null withheld)."""

    people = fields.Raw(required=True, metadata={"description": 'a count, or "<5"'})
    mean_change = fields.Float(required=True, allow_none=True)
    improved = fields.Raw(required=True, allow_none=True)
    improved_share = fields.Float(required=True, allow_none=True)


class EvidenceRow(Schema):
    """One group's measures; counts from 1 to 4 are "<5", figures drawn from them null."""

    group = fields.String(required=True)
    received = fields.Raw(required=True, metadata={"description": 'a count, or "<5"'})
    accepted = fields.Raw(required=True)
    declined = fields.Raw(required=True)
    completed = fields.Raw(required=True)
    contacted = fields.Raw(required=True)
    days_to_first_contact_median = fields.Float(required=True, allow_none=True)
    days_to_first_contact_p90 = fields.Float(required=True, allow_none=True)
    wellbeing = fields.Dict(keys=fields.String(), values=fields.Nested(EvidenceWellbeing))


class EvidenceMeasures(Schema):
    """A measure table for commissioners (docs/evidence.md)."""

    grouping = fields.String(
        required=True, validate=validate.OneOf(["period", "source", "practice", "pcn", "hub"])
    )
    since = fields.String(required=True, allow_none=True, data_key="from")
    to = fields.String(required=True, allow_none=True)
    suppressed_below = fields.Integer(required=True)
    rows = fields.List(fields.Nested(EvidenceRow), required=True)
