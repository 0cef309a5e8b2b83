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


def text_of(value: Any) -> str | None:
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
    text = text_of(value)
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
    text = text_of(value)
    return text.upper() if text else None


_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?")


@transform("date")
def fhir_date(value: Any, state: MapState) -> str | None:
    """The date part (YYYY-MM-DD) of a FHIR date or dateTime; anything else is diagnosed."""
    text = text_of(value)
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
    text = text_of(value)
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
    system, code = text_of(value.get("system")), text_of(value.get("code"))
    if not system or not code:
        state.diagnose("incomplete-coding", "a coding without system or code was not used")
        return None
    out = {"system": system, "code": code}
    display = text_of(value.get("display"))
    if display:
        out["display"] = display
    return out


@transform("concept_text")
def concept_text(value: Any, state: MapState) -> str | None:
    """A CodeableConcept's text, else its first coding's display."""
    if not isinstance(value, dict):
        return text_of(value)
    text = text_of(value.get("text"))
    if text:
        return text
    for item in value.get("coding") or []:
        display = text_of(item.get("display")) if isinstance(item, dict) else None
        if display:
            return display
    return None


@transform("human_name")
def human_name(value: Any, state: MapState) -> str | None:
    """A HumanName as display text: its text, else prefix, given names and family."""
    if not isinstance(value, dict):
        return text_of(value)
    text = text_of(value.get("text"))
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
    lines = [t for t in (text_of(v) for v in value.get("line") or []) if t]
    if lines:
        out["lines"] = lines
    for src, dst in (("city", "city"), ("district", "district"), ("postalCode", "postcode")):
        text = text_of(value.get(src))
        if text:
            out[dst] = text.upper() if dst == "postcode" else text
    return out or None


@transform("boolean")
def boolean(value: Any, state: MapState) -> bool | None:
    """true/false from JSON booleans or XML text ("true", "false")."""
    if isinstance(value, bool):
        return value
    text = text_of(value)
    if text in ("true", "false"):
        return text == "true"
    if text is not None:
        state.diagnose("unparsed-boolean", "value is not true or false")
    return None


@transform("joined_text", collection=True)
def joined_text(values: list[Any], state: MapState) -> str | None:
    """Several texts as one, separated by blank lines (notes, annotations)."""
    texts = [t for t in (text_of(v) for v in values) if t]
    return "\n\n".join(texts) or None


@transform("given_names", collection=True)
def given_names(values: list[Any], state: MapState) -> str | None:
    """All given names of one person, in order, separated by spaces."""
    texts = [t for t in (text_of(v) for v in values) if t]
    return " ".join(texts) or None


@transform("reason_150")
def reason_150(value: Any, state: MapState) -> str | None:
    """The reason for referral, cut at a word to PRSB's 150 characters; the cut is diagnosed."""
    text = text_of(value)
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
    text = text_of(value)
    return text if text and len(text) > REASON_MAX else None


@transform("text")
def plain_text(value: Any, state: MapState) -> str | None:
    """A primitive as stripped text (empty strings dropped)."""
    return text_of(value)


@transform("lower")
def lower(value: Any, state: MapState) -> str | None:
    """A code as lower case text."""
    text = text_of(value)
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


def truth_of(value: Any) -> bool | None:
    """JSON true/false, or the text "true"/"false"; None for anything else."""
    if isinstance(value, bool):
        return value
    text = text_of(value)
    return text == "true" if text in ("true", "false") else None


@transform("any_true", collection=True)
def any_true(values: list[Any], state: MapState) -> bool | None:
    """True when any value is true, false when every value is false, nothing when none is either."""
    seen = [t for t in (truth_of(v) for v in values) if t is not None]
    if len(seen) != len(values):
        state.diagnose("unparsed-boolean", "value is not true or false")
    return any(seen) if seen else None


SNOMED_CT = "http://snomed.info/sct"


@transform("snomed_concept")
def snomed_concept(value: Any, state: MapState) -> dict[str, str] | None:
    """A SNOMED CT concept id sent on its own (JSON sources) as a coding ``{system, code}``."""
    text = text_of(value)
    return {"system": SNOMED_CT, "code": text} if text else None
