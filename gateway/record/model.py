"""The social prescribing referral record (PRSB Social Prescribing Information Standard v1.1).

The marshmallow schemas below are the single definition of the record: the JSON Schema served
at GET /schema/referral-record and the fast validator used on the intake hot path are both
generated from them (see ``gateway.record.schema``).
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

REFERRAL_METHODS = (
    "fax",
    "phone",
    "secure messaging",
    "secure email",
    "letter",
    "NHS e-Referral Service",
    "self referral",
    "discharge",
)
PRIORITIES = ("routine", "urgent", "asap", "stat")
REFERRAL_STATUSES = (
    "draft",
    "pending",
    "active",
    "on-hold",
    "revoked",
    "completed",
    "entered-in-error",
)
MESSAGE_EVENTS = ("new", "update", "delete")
SEXES = ("male", "female", "other", "unknown")
CONSENT_STATES = ("given", "refused", "not-obtained")
CONTACT_METHODS = ("phone", "mobile", "email", "sms", "letter")
ITEM_STATES = ("not-stated",)
SEVERITIES = ("M", "R")
REASON_MAX = 150


def _text(maximum: int = 2000, **kwargs: Any) -> fields.String:
    """A free-text field with a length cap, optional and nullable unless told otherwise."""
    kwargs.setdefault("allow_none", True)
    return fields.String(validate=validate.Length(min=1, max=maximum), **kwargs)


class Strict(Schema):
    """Base: unknown keys are errors, so a mapping typo never silently vanishes."""

    class Meta:
        ordered = True


class Coding(Strict):
    """A code from a code system (SNOMED CT, a local scheme) with its display text."""

    system = _text(500, required=True, allow_none=False)
    code = _text(100, required=True, allow_none=False)
    display = _text(500)


class Address(Strict):
    """A postal address."""

    lines = fields.List(fields.String(validate=validate.Length(min=1, max=200)))
    city = _text(100)
    district = _text(100)
    postcode = _text(10)


class Contact(Strict):
    """Ways to reach a person or service."""

    phone = _text(40)
    mobile = _text(40)
    email = _text(200)
    sms = _text(40)
    preferred = fields.String(allow_none=True, validate=validate.OneOf(CONTACT_METHODS))


class Person(Strict):
    """Person demographics (M): given name, family name and date of birth are mandatory."""

    nhs_number = fields.String(
        allow_none=True, validate=validate.Regexp(r"^[0-9]{10}$", error="must be 10 digits")
    )
    nhs_number_verification = _text(50)
    given_name = _text(100, required=True, allow_none=False)
    family_name = _text(100, required=True, allow_none=False)
    known_as = _text(100)
    date_of_birth = fields.Date(required=True)
    sex = fields.String(allow_none=True, validate=validate.OneOf(SEXES))
    gender = _text(100)
    ethnicity = fields.Nested(Coding, allow_none=True)
    address = fields.Nested(Address, allow_none=True)
    contact = fields.Nested(Contact, allow_none=True)
    preferred_language = _text(100)


class GpPractice(Strict):
    """The person's registered GP practice (M), identified by its ODS code, and their GP."""

    ods_code = fields.String(
        allow_none=True, validate=validate.Regexp(r"^[A-Z0-9]{3,6}$", error="ODS code, max 6")
    )
    name = _text(200)
    practitioner_code = _text(20)
    practitioner_name = _text(200)


class AboutMe(Strict):
    """About me / what matters to me (R)."""

    what_matters_to_me = _text()
    people_important_to_me = _text()
    how_i_communicate = _text()
    my_wellness = _text()
    please_do = _text()
    please_dont = _text()
    how_and_when_to_support_me = _text()
    also_worth_knowing = _text()


class IndividualRequirements(Strict):
    """Reasonable adjustments, impairments, mobility, interpreter (R)."""

    reasonable_adjustments = _text()
    reasonable_adjustment_codes = fields.List(fields.Nested(Coding))
    impairments = _text()
    mobility = _text()
    interpreter_needed = fields.Boolean(allow_none=True)
    interpreter_language = _text(100)


class Safeguarding(Strict):
    """Safeguarding concerns and whether the person may be contacted (R)."""

    concerns = _text()
    may_contact = fields.Boolean(allow_none=True)


class Consent(Strict):
    """Consent for information sharing (R); record why when it was not obtained."""

    information_sharing = fields.String(required=True, validate=validate.OneOf(CONSENT_STATES))
    reason_not_obtained = _text(500)
    date = fields.String(allow_none=True)
    recorded_by = _text(200)


class Referrer(Strict):
    """Who referred (M): name, service, organisation ODS code and contact details.

    Each may be not stated by the sender; ``data_quality`` then says so.
    """

    name = _text(200)
    role = _text(200)
    service = _text(200)
    ods_code = fields.String(
        allow_none=True, validate=validate.Regexp(r"^[A-Z0-9]{3,6}$", error="ODS code, max 6")
    )
    contact = fields.Nested(Contact, allow_none=True)


class Organisation(Strict):
    """A service or organisation named by the referral (referral to, return response to)."""

    name = _text(200)
    ods_code = fields.String(
        allow_none=True, validate=validate.Regexp(r"^[A-Z0-9]{3,6}$", error="ODS code, max 6")
    )

    json_schema_extra = {
        "anyOf": [
            {"required": ["name"], "properties": {"name": {"type": "string"}}},
            {"required": ["ods_code"], "properties": {"ods_code": {"type": "string"}}},
        ]
    }

    @validates_schema
    def _named(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("name") and not data.get("ods_code"):
            raise ValidationError("a name or an ODS code is required", "name")


class Discharge(Strict):
    """Hospital discharge facts, when a discharge team refers (HL7 v2 ADT^A03)."""

    date = fields.String(allow_none=True)
    hospital_ods_code = fields.String(
        allow_none=True, validate=validate.Regexp(r"^[A-Z0-9]{3,6}$", error="ODS code, max 6")
    )
    ward = _text(200)
    specialty = _text(200)
    disposition = _text(200)
    destination = _text(200)


class ReferralDetails(Strict):
    """Referral details (M)."""

    identifier = _text(200, required=True, allow_none=False)
    identifier_system = _text(500)
    status = fields.String(required=True, validate=validate.OneOf(REFERRAL_STATUSES))
    type = fields.Nested(Coding, allow_none=True)
    date = fields.String(allow_none=True)
    referrer = fields.Nested(Referrer, allow_none=True)
    method = fields.String(allow_none=True, validate=validate.OneOf(REFERRAL_METHODS))
    reason = _text(REASON_MAX)
    reason_full = _text(5000)
    reason_codes = fields.List(fields.Nested(Coding))
    notes = _text(5000)
    priority = fields.String(allow_none=True, validate=validate.OneOf(PRIORITIES))
    referral_to = fields.Nested(Organisation, allow_none=True)
    return_response_to = fields.Nested(Organisation, allow_none=True)
    discharge = fields.Nested(Discharge, allow_none=True)


class Assessment(Strict):
    """An assessment result (PRSB Assessments): what was measured, the value and its unit."""

    coding = fields.Nested(Coding, required=True)
    value = fields.Float(allow_none=True)
    text = _text(1000)
    unit = _text(50)
    date = fields.String(allow_none=True)

    json_schema_extra = {
        "anyOf": [
            {"required": ["value"], "properties": {"value": {"type": "number"}}},
            {"required": ["text"], "properties": {"text": {"type": "string"}}},
        ]
    }

    @validates_schema
    def _valued(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("value") is None and not data.get("text"):
            raise ValidationError("an assessment needs a value or text", "value")


class Risk(Strict):
    """One risk: coded (< 281694009 Finding of at risk) or text."""

    coding = fields.Nested(Coding, allow_none=True)
    text = _text(1000)

    json_schema_extra = {
        "anyOf": [
            {"required": ["coding"], "properties": {"coding": {"type": "object"}}},
            {"required": ["text"], "properties": {"text": {"type": "string"}}},
        ]
    }

    @validates_schema
    def _described(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("coding") and not data.get("text"):
            raise ValidationError("a risk needs a code or text", "text")


class Risks(Strict):
    """Risks (M): either listed, or explicitly "no known risks"; left out when not stated."""

    no_known_risks = fields.Boolean(required=True)
    items = fields.List(fields.Nested(Risk), required=True)

    json_schema_extra = {
        "if": {"properties": {"no_known_risks": {"const": False}}},
        "then": {"properties": {"items": {"minItems": 1}}},
        "else": {"properties": {"items": {"maxItems": 0}}},
    }

    @validates_schema
    def _stated(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("no_known_risks") and not data.get("items"):
            raise ValidationError("list the risks or state no known risks", "items")
        if data.get("no_known_risks") and data.get("items"):
            raise ValidationError("no known risks, yet risks are listed", "items")


class Elements(Strict):
    """Where in the sender's message the identity items came from (FHIRPath or HL7 location)."""

    nhs_number = _text(500, data_key="person.nhs_number")
    family_name = _text(500, data_key="person.family_name")
    given_name = _text(500, data_key="person.given_name")
    date_of_birth = _text(500, data_key="person.date_of_birth")
    identifier = _text(500, data_key="referral.identifier")


class Provenance(Strict):
    """Where the record came from: source, message, mapping version."""

    source_system = _text(100, required=True, allow_none=False)
    source_message_id = _text(200)
    message_event = fields.String(allow_none=True, validate=validate.OneOf(MESSAGE_EVENTS))
    sent_at = fields.String(allow_none=True)
    received_at = fields.String(allow_none=True)
    mapping_version = _text(200, required=True, allow_none=False)
    elements = fields.Nested(Elements, allow_none=True)


class Diagnostic(Strict):
    """Something the mapping could not place: an unknown code, an unused element, a truncation."""

    code = fields.String(required=True)
    location = fields.String(required=True)
    message = fields.String(required=True)


class DataQuality(Strict):
    """A PRSB mandatory (M) or required (R) item the sender did not state, for the link worker."""

    item = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(ITEM_STATES))
    severity = fields.String(required=True, validate=validate.OneOf(SEVERITIES))
    message = fields.String(required=True)


class ReferralRecord(Strict):
    """The whole social prescribing referral record."""

    person = fields.Nested(Person, required=True)
    gp_practice = fields.Nested(GpPractice, allow_none=True)
    about_me = fields.Nested(AboutMe, allow_none=True)
    individual_requirements = fields.Nested(IndividualRequirements, allow_none=True)
    safeguarding = fields.Nested(Safeguarding, allow_none=True)
    consent = fields.Nested(Consent, allow_none=True)
    referral = fields.Nested(ReferralDetails, required=True)
    presenting_issues = fields.List(fields.Nested(Coding))
    assessments = fields.List(fields.Nested(Assessment))
    risks = fields.Nested(Risks, allow_none=True)
    provenance = fields.Nested(Provenance, required=True)
    data_quality = fields.List(fields.Nested(DataQuality))
    diagnostics = fields.List(fields.Nested(Diagnostic))
