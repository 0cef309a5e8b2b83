"""What the non-FHIR API answers, as marshmallow schemas; the OpenAPI document comes from them."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from gateway.record.model import ReferralRecord
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


class RecordEnvelope(Schema):
    """One version of a referral's record with its ids, statuses and feed cursor."""

    id = fields.String(required=True)
    version = fields.Integer(required=True)
    status = fields.String(required=True)
    source = fields.String(required=True)
    referral_identifier = fields.String(required=True)
    referral_identifier_system = fields.String(required=True, allow_none=True)
    workflow_status = fields.String(required=True, validate=validate.OneOf(STATES))
    cancellation_requested = fields.Boolean(required=True)
    cursor = fields.String(required=True)
    received_at = fields.String(required=True)
    record = fields.Nested(ReferralRecord, required=True)


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
