"""The self-referral form's answers: checked in plain words, then built into a JSON document.

``check`` turns the posted fields into the errors a person sees (each naming the field it is
about, for the error summary's links); ``document`` builds the community-shaped referral the
``self-referral`` mapping reads, with the person as their own referrer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from gateway import nhs_number

#: Longest answer accepted in each field (the inputs say so too, with maxlength).
LIMITS = {
    "given_name": 100,
    "family_name": 100,
    "nhs_number": 20,
    "address_line_1": 200,
    "address_line_2": 200,
    "town": 100,
    "postcode": 10,
    "phone": 40,
    "email": 200,
    "contact_preferences": 1000,
    "reason": 1000,
    "what_matters": 1000,
    "gp_practice": 200,
}
FIELDS = (*LIMITS, "dob_day", "dob_month", "dob_year", "may_contact", "contact_method", "consent")
CONTACT_METHODS = {"phone": "phone", "text": "sms", "email": "email", "letter": "letter"}
_POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ()-]{10,20}$")
#: Where a refusal by the pipeline (a JSON element) is shown on the form.
FIELD_OF_ELEMENT = {
    "$.person.given_name": "given_name",
    "$.person.family_name": "family_name",
    "$.person.date_of_birth": "dob_day",
    "$.person.nhs_number": "nhs_number",
    "$.person.address.postcode": "postcode",
    "$.person.contact.email": "email",
    "$.person.contact.phone": "phone",
    "$.reason": "reason",
}


@dataclass(frozen=True)
class FieldError:
    """One thing to put right: the field's id and what to do, in plain words."""

    field: str
    message: str


def answers_of(form: Mapping[str, str]) -> dict[str, str]:
    """The form's answers, trimmed (unknown fields are not kept)."""
    return {name: (form.get(name) or "").strip() for name in FIELDS}


def _birth_date(answers: dict[str, str], today: date) -> tuple[date | None, str | None]:
    """The date of birth, or why it is not one."""
    parts = (answers["dob_day"], answers["dob_month"], answers["dob_year"])
    if not any(parts):
        return None, "Enter your date of birth"
    if not all(p.isdigit() for p in parts):
        return None, "Date of birth must be a real date, like 27 3 1980"
    day, month, year = (int(p) for p in parts)
    try:
        born = date(year, month, day)
    except ValueError:
        return None, "Date of birth must be a real date, like 27 3 1980"
    if born >= today:
        return None, "Date of birth must be in the past"
    if year < 1900:
        return None, "Check the year you were born: it must be after 1900"
    return born, None


def check(answers: dict[str, str], today: date | None = None) -> list[FieldError]:
    """What the person must put right, in the order of the form (empty: nothing)."""
    today = today or date.today()
    errors: list[FieldError] = []

    def need(field: str, message: str) -> None:
        if not answers[field]:
            errors.append(FieldError(field, message))

    need("given_name", "Enter your first name")
    need("family_name", "Enter your last name")
    _, problem = _birth_date(answers, today)
    if problem:
        errors.append(FieldError("dob_day", problem))
    number = answers["nhs_number"]
    if number and not nhs_number.is_valid(nhs_number.normalise(number)):
        errors.append(
            FieldError(
                "nhs_number",
                "Enter your NHS number as it is written, 10 digits, or leave it blank",
            )
        )
    postcode = answers["postcode"].upper()
    if postcode and not _POSTCODE.match(" ".join(postcode.split())):
        errors.append(FieldError("postcode", "Enter a real postcode, like LS1 4AP"))
    if answers["may_contact"] not in ("yes", "no"):
        errors.append(FieldError("may_contact", "Select yes if we may contact you"))
    method = answers["contact_method"]
    if answers["may_contact"] == "yes":
        if method not in CONTACT_METHODS:
            errors.append(
                FieldError("contact_method", "Select how you would like us to contact you")
            )
        elif method in ("phone", "text") and not answers["phone"]:
            errors.append(FieldError("phone", "Enter a phone number, so we can call or text you"))
        elif method == "email" and not answers["email"]:
            errors.append(FieldError("email", "Enter an email address, so we can email you"))
        elif method == "letter" and not (answers["address_line_1"] and postcode):
            errors.append(
                FieldError("address_line_1", "Enter your address and postcode, so we can write")
            )
    if answers["phone"] and not _PHONE.match(answers["phone"]):
        errors.append(FieldError("phone", "Enter a phone number, like 01632 960 001"))
    if answers["email"] and not _EMAIL.match(answers["email"]):
        errors.append(FieldError("email", "Enter an email address, like name@example.com"))
    need("reason", "Tell us what you would like help with")
    if answers["consent"] not in ("yes", "no"):
        errors.append(
            FieldError("consent", "Select yes if we can share what you tell us with a link worker")
        )
    for field, limit in LIMITS.items():
        if len(answers[field]) > limit:
            errors.append(FieldError(field, f"Keep this to {limit} characters or fewer"))
    return errors


def _drop_empty(node: dict[str, Any]) -> dict[str, Any]:
    """The object without empty answers (and without objects left empty)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            value = _drop_empty(value)
        if value not in ("", None, [], {}):
            out[key] = value
    return out


def document(
    answers: dict[str, str], reference: str, now: datetime | None = None
) -> dict[str, Any]:
    """The self-referral as a community referral document, the person as the referrer."""
    now = now or datetime.now(UTC)
    born, _ = _birth_date(answers, now.date())
    method = (
        CONTACT_METHODS.get(answers["contact_method"]) if answers["may_contact"] == "yes" else None
    )
    phone = answers["phone"]
    name = f"{answers['given_name']} {answers['family_name']}"
    person = {
        "nhs_number": nhs_number.normalise(answers["nhs_number"]),
        "given_name": answers["given_name"],
        "family_name": answers["family_name"],
        "date_of_birth": born.isoformat() if born else "",
        "address": {
            "lines": [x for x in (answers["address_line_1"], answers["address_line_2"]) if x],
            "city": answers["town"],
            "postcode": answers["postcode"],
        },
        "contact": {
            "phone": phone,
            "sms": phone if method == "sms" else "",
            "email": answers["email"],
            "preferred": method or "",
        },
        "contact_preferences": answers["contact_preferences"],
        "may_contact": answers["may_contact"] == "yes",
        "gp_practice": {"name": answers["gp_practice"]},
    }
    moment = now.isoformat(timespec="seconds")
    return _drop_empty(
        {
            "reference": reference,
            "sent_at": moment,
            "date": moment,
            "referrer": {"name": name},
            "person": person,
            "consent": {
                "information_sharing": "given" if answers["consent"] == "yes" else "refused",
                "date": now.date().isoformat(),
            },
            "reason": answers["reason"],
            "what_matters_to_me": answers["what_matters"],
        }
    )
