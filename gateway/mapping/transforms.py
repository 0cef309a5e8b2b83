"""Named transforms that mapping rules may use, each named after the concept it converts.

A value transform takes one selected value and returns the converted value (None drops it).
A collection transform (registered with ``collection=True``) takes every selected value at once.
Transforms report what they could not convert through ``MapState.diagnose``; they raise a
domain error only when the message itself is wrong (for example an NHS number check digit).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway import nhs_number
from gateway.errors import InvalidContent
from gateway.record.model import REASON_MAX


@dataclass
class MapState:
    """Per-message state a transform may use: the source's time zone and the diagnostics."""

    timezone: ZoneInfo
    diagnostics: list[dict[str, str]] = field(default_factory=list)
    where: str = ""
    describe: Callable[[str], str] = str

    @property
    def location(self) -> str:
        """The message element now being mapped, as FHIRPath (computed only when needed)."""
        return self.describe(self.where) if self.where else ""

    def diagnose(self, code: str, message: str, location: str | None = None) -> None:
        """Record something the mapping could not place (never patient data in ``message``)."""
        self.diagnostics.append(
            {"code": code, "location": location or self.location, "message": message}
        )


Transform = Callable[[Any, MapState], Any]


@dataclass(frozen=True)
class Registered:
    """A transform with its kind."""

    func: Transform
    collection: bool


REGISTRY: dict[str, Registered] = {}


def transform(name: str, *, collection: bool = False) -> Callable[[Transform], Transform]:
    """Register a transform under the name that mapping files use."""

    def add(func: Transform) -> Transform:
        REGISTRY[name] = Registered(func, collection)
        return func

    return add


def _text(value: Any) -> str | None:
    """A primitive as stripped text, or None when empty or not a primitive.

    An HL7 v2 component or repetition ({"1": ...}) reads as its first part.
    """
    if type(value) is str:
        return value.strip() or None
    while isinstance(value, dict) and "1" in value and "resourceType" not in value:
        value = value["1"]
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


@transform("nhs_number")
def nhs_number_checked(value: Any, state: MapState) -> str | None:
    """An NHS number with spaces removed; a wrong length or check digit rejects the message."""
    text = _text(value)
    if text is None:
        return None
    number = nhs_number.normalise(text)
    if not nhs_number.is_valid(number):
        raise InvalidContent(
            "NHS number is not 10 digits with a valid modulus-11 check digit",
            expression=state.location,
        )
    return number


@transform("ods_code")
def ods_code(value: Any, state: MapState) -> str | None:
    """An ODS organisation code, upper-cased and stripped."""
    text = _text(value)
    return text.upper() if text else None


_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?")


@transform("date")
def fhir_date(value: Any, state: MapState) -> str | None:
    """The date part (YYYY-MM-DD) of a FHIR date or dateTime; anything else is diagnosed."""
    text = _text(value)
    if text is None:
        return None
    match = _DATE.match(text)
    if not match or len(match.group(0)) != 10:
        state.diagnose("unparsed-date", "value is not a full date (YYYY-MM-DD)")
        return None
    return match.group(0)


@transform("datetime")
def fhir_datetime(value: Any, state: MapState) -> str | None:
    """A FHIR dateTime as ISO 8601 with an offset; local times take the source's time zone."""
    text = _text(value)
    if text is None:
        return None
    if len(text) <= 10 and _DATE.fullmatch(text):
        return text  # a date, or a partial date (YYYY, YYYY-MM): no time, no zone
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        state.diagnose("unparsed-date", "value is not an ISO 8601 date-time")
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=state.timezone)
    return moment.isoformat()


@transform("coding")
def coding(value: Any, state: MapState) -> dict[str, str] | None:
    """A FHIR Coding as {system, code, display}; a Coding without system or code is dropped."""
    if not isinstance(value, dict):
        return None
    system, code = _text(value.get("system")), _text(value.get("code"))
    if not system or not code:
        state.diagnose("incomplete-coding", "a coding without system or code was not used")
        return None
    out = {"system": system, "code": code}
    display = _text(value.get("display"))
    if display:
        out["display"] = display
    return out


@transform("concept_text")
def concept_text(value: Any, state: MapState) -> str | None:
    """A CodeableConcept's text, else its first coding's display."""
    if not isinstance(value, dict):
        return _text(value)
    text = _text(value.get("text"))
    if text:
        return text
    for item in value.get("coding") or []:
        display = _text(item.get("display")) if isinstance(item, dict) else None
        if display:
            return display
    return None


@transform("human_name")
def human_name(value: Any, state: MapState) -> str | None:
    """A HumanName as display text: its text, else prefix, given names and family."""
    if not isinstance(value, dict):
        return _text(value)
    text = _text(value.get("text"))
    if text:
        return text
    parts = [*(value.get("prefix") or []), *(value.get("given") or []), value.get("family")]
    joined = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return joined or None


@transform("address")
def address(value: Any, state: MapState) -> dict[str, Any] | None:
    """A FHIR Address as {lines, city, district, postcode}."""
    if not isinstance(value, dict):
        return None
    out: dict[str, Any] = {}
    lines = [t for t in (_text(v) for v in value.get("line") or []) if t]
    if lines:
        out["lines"] = lines
    for src, dst in (("city", "city"), ("district", "district"), ("postalCode", "postcode")):
        text = _text(value.get(src))
        if text:
            out[dst] = text.upper() if dst == "postcode" else text
    return out or None


#: ContactPoint kinds the record knows, by (system, use): what ``telecom`` files each under.
_CONTACT_KINDS = {"email": "email", "sms": "sms"}


def _contact_kind(point: dict[str, Any]) -> str | None:
    """Which record contact a ContactPoint is: phone, mobile, email or sms (None for others)."""
    system = point.get("system")
    if system == "phone":
        return "mobile" if point.get("use") == "mobile" else "phone"
    return _CONTACT_KINDS.get(system) if isinstance(system, str) else None


def _rank(point: dict[str, Any]) -> int | None:
    """A ContactPoint's rank (1 is the most preferred), None when absent or unreadable."""
    rank = point.get("rank")
    if isinstance(rank, bool):
        return None
    if isinstance(rank, int):
        return rank
    if isinstance(rank, str) and rank.strip().isdigit():
        return int(rank)
    return None


@transform("telecom", collection=True)
def telecom(values: list[Any], state: MapState) -> dict[str, str] | None:
    """ContactPoints as {phone, mobile, email, sms, preferred}: the first of each kind.

    A phone with ``use`` mobile is a mobile; ``preferred`` is the kind of the ContactPoint
    with the lowest ``rank`` (UK Core: rank 1 is the preferred way to make contact).
    """
    out: dict[str, str] = {}
    best: tuple[int, str] | None = None
    for point in values:
        if not isinstance(point, dict):
            continue
        text = _text(point.get("value"))
        kind = _contact_kind(point)
        if not text or kind is None:
            continue
        out.setdefault(kind, text)
        rank = _rank(point)
        if rank is not None and rank > 0 and (best is None or rank < best[0]):
            best = (rank, kind)
    if best is not None:
        out["preferred"] = best[1]
    return out or None


@transform("boolean")
def boolean(value: Any, state: MapState) -> bool | None:
    """true/false from JSON booleans or XML text ("true", "false")."""
    if isinstance(value, bool):
        return value
    text = _text(value)
    if text in ("true", "false"):
        return text == "true"
    if text is not None:
        state.diagnose("unparsed-boolean", "value is not true or false")
    return None


@transform("joined_text", collection=True)
def joined_text(values: list[Any], state: MapState) -> str | None:
    """Several texts as one, separated by blank lines (notes, annotations)."""
    texts = [t for t in (_text(v) for v in values) if t]
    return "\n\n".join(texts) or None


@transform("given_names", collection=True)
def given_names(values: list[Any], state: MapState) -> str | None:
    """All given names of one person, in order, separated by spaces."""
    texts = [t for t in (_text(v) for v in values) if t]
    return " ".join(texts) or None


@transform("reason_150")
def reason_150(value: Any, state: MapState) -> str | None:
    """The reason for referral, cut at a word to PRSB's 150 characters; the cut is diagnosed."""
    text = _text(value)
    if text is None or len(text) <= REASON_MAX:
        return text
    cut = text[: REASON_MAX - 1].rsplit(" ", 1)[0].rstrip(" ,;.") + "…"
    state.diagnose(
        "truncated",
        f"reason for referral was {len(text)} characters; cut to {len(cut)}, "
        "full text in referral.reason_full",
    )
    return cut


@transform("overflow_text")
def overflow_text(value: Any, state: MapState) -> str | None:
    """The full text only when it is longer than PRSB's 150 characters (else nothing)."""
    text = _text(value)
    return text if text and len(text) > REASON_MAX else None


@transform("text")
def plain_text(value: Any, state: MapState) -> str | None:
    """A primitive as stripped text (empty strings dropped)."""
    return _text(value)


@transform("lower")
def lower(value: Any, state: MapState) -> str | None:
    """A code as lower case text."""
    text = _text(value)
    return text.lower() if text else None


@transform("concept_texts", collection=True)
def concept_texts(values: list[Any], state: MapState) -> str | None:
    """Several CodeableConcepts as one text: each one's text (else first display), no repeats."""
    texts: list[str] = []
    for value in values:
        text = concept_text(value, state)
        if text and text not in texts:
            texts.append(text)
    return "\n\n".join(texts) or None


def _truth(value: Any) -> bool | None:
    """JSON true/false, or the text "true"/"false"; None for anything else."""
    if isinstance(value, bool):
        return value
    text = _text(value)
    return text == "true" if text in ("true", "false") else None


@transform("any_true", collection=True)
def any_true(values: list[Any], state: MapState) -> bool | None:
    """True when any value is true, false when every value is false, nothing when none is either."""
    seen = [t for t in (_truth(v) for v in values) if t is not None]
    if len(seen) != len(values):
        state.diagnose("unparsed-boolean", "value is not true or false")
    return any(seen) if seen else None


#: The retired UK Core extension that carried a patient's languages, one extension each.
NHS_COMMUNICATION = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSCommunication"


def _sub_value(extension: dict[str, Any], url: str, key: str) -> Any:
    """The value ``key`` of the sub-extension ``url`` of a complex extension, or None."""
    for sub in extension.get("extension") or []:
        if isinstance(sub, dict) and sub.get("url") == url:
            return sub.get(key)
    return None


def _language(value: Any, state: MapState, wanted: str) -> str | None:
    """The first language among ``value``s: NHSCommunication extensions whose ``wanted``
    part is true (``preferred`` or ``interpreterRequired``), or CodeableConcepts as sent."""
    fallback: str | None = None
    text: str | None
    for item in value:
        if isinstance(item, dict) and item.get("url") == NHS_COMMUNICATION:
            text = concept_text(_sub_value(item, "language", "valueCodeableConcept"), state)
            if text and _truth(_sub_value(item, wanted, "valueBoolean")):
                return text
            if wanted == "preferred" and fallback is None:
                fallback = text
        else:
            text = concept_text(item, state)
            if text:
                return text
    return fallback


@transform("interpreter_language", collection=True)
def interpreter_language(values: list[Any], state: MapState) -> str | None:
    """The language an interpreter is needed for: from the retired NHSCommunication extensions
    (the one with interpreterRequired true), or a language CodeableConcept as sent."""
    return _language(values, state, "interpreterRequired")


@transform("preferred_language", collection=True)
def preferred_language(values: list[Any], state: MapState) -> str | None:
    """A person's preferred language: from NHSCommunication extensions (the preferred one, else
    the first), or a language CodeableConcept as sent."""
    return _language(values, state, "preferred")


_WHAT_MATTERS = re.compile(r"^\s*what matters to me\b", re.IGNORECASE)


@transform("what_matters_to_me", collection=True)
def what_matters_to_me(values: list[Any], state: MapState) -> str | None:
    """ "What matters to me" texts: plain texts, and only those notes (Annotations) that the
    referrer began with "What matters to me", kept as written; joined by blank lines."""
    texts: list[str] = []
    for value in values:
        if isinstance(value, dict):
            text = _text(value.get("text"))
            if not text or not _WHAT_MATTERS.match(text):
                continue
        else:
            text = _text(value)
        if text:
            texts.append(text)
    return "\n\n".join(texts) or None
