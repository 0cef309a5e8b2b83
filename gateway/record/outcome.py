"""The outcome record a link-worker platform sends back (PRSB "message back to GP and referrer").

Status follows the closed-loop referral Task state machine (gateway.record.states); scores
are range-checked per instrument; everything else is what the GP and referrer need to see.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from gateway.record.model import Coding
from gateway.record.states import STATES

CONTACT_MECHANISMS = ("face-to-face", "telephone", "video", "text message", "email")
ATTENDANCE = ("attended", "did not attend", "cancelled by person", "cancelled by service")
ACTIVITY_STATES = ("planned", "started", "completed", "stopped", "declined")
REASON_REQUIRED = frozenset({"rejected", "cancelled", "on-hold", "failed"})

#: Instruments with their score ranges (ONS4 items, WEMWBS, SWEMWBS, UCLA-3 totals).
INSTRUMENTS: dict[str, tuple[float, float]] = {
    "ons4-life-satisfaction": (0, 10),
    "ons4-worthwhile": (0, 10),
    "ons4-happiness": (0, 10),
    "ons4-anxiety": (0, 10),
    "wemwbs": (14, 70),
    "swemwbs": (7, 35),
    "ucla3": (3, 9),
}


class _Closed(Schema):
    """Unknown keys are errors."""

    class Meta:
        ordered = True


class Contact(_Closed):
    """One contact between the link worker and the person."""

    date = fields.DateTime(required=True)
    mechanism = fields.String(required=True, validate=validate.OneOf(CONTACT_MECHANISMS))
    location_type = fields.String(validate=validate.Length(max=200))
    outcome = fields.String(validate=validate.OneOf(ATTENDANCE))


class Assessment(_Closed):
    """A wellbeing score: a known instrument (range-checked) or another coded measure."""

    instrument = fields.String(required=True, validate=validate.Length(min=1, max=100))
    coding = fields.Nested(Coding)
    score = fields.Float(required=True)
    date = fields.Date(required=True)

    @validates_schema
    def _in_range(self, data: dict[str, Any], **_: Any) -> None:
        instrument = data["instrument"]
        bounds = INSTRUMENTS.get(instrument)
        if bounds is None:
            if not data.get("coding"):
                raise ValidationError(
                    f"{instrument!r} is not a known instrument; give its coding", "coding"
                )
            return
        low, high = bounds
        if not low <= data["score"] <= high:
            raise ValidationError(f"{instrument} scores run from {low:g} to {high:g}", "score")


class Activity(_Closed):
    """An activity or service the person was connected to (refset 1373511000000107)."""

    coding = fields.Nested(Coding)
    description = fields.String(required=True, validate=validate.Length(min=1, max=500))
    provider = fields.String(validate=validate.Length(max=200))
    status = fields.String(required=True, validate=validate.OneOf(ACTIVITY_STATES))
    start = fields.Date()


class Closure(_Closed):
    """How and when the episode closed."""

    date = fields.Date(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class OutcomeRecord(_Closed):
    """One outcome: a status change with what happened since the last one."""

    outcome_id = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9.\-]{1,64}$"))
    status = fields.String(required=True, validate=validate.OneOf(STATES))
    status_reason = fields.String(validate=validate.Length(min=1, max=500))
    occurred_at = fields.DateTime(required=True)
    link_worker = fields.String(validate=validate.Length(max=200))
    contacts = fields.List(fields.Nested(Contact))
    assessments = fields.List(fields.Nested(Assessment))
    activities = fields.List(fields.Nested(Activity))
    clinical_summary = fields.String(validate=validate.Length(max=10000))
    closure = fields.Nested(Closure)

    @validates_schema
    def _reason_when_needed(self, data: dict[str, Any], **_: Any) -> None:
        if data["status"] in REASON_REQUIRED and not data.get("status_reason"):
            raise ValidationError(f"a {data['status']} outcome needs a reason", "status_reason")
