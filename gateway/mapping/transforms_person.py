"""Transforms of a person's own details: contact points, languages, what matters to them.

Registered by name like every transform (``gateway.mapping.transforms``); imported by the
compiler so that mapping files can use them.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.mapping.transforms import MapState, concept_text, text_of, transform, truth_of

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
        text = text_of(point.get("value"))
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
            if text and truth_of(_sub_value(item, wanted, "valueBoolean")):
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
            text = text_of(value.get("text"))
            if not text or not _WHAT_MATTERS.match(text):
                continue
        else:
            text = text_of(value)
        if text:
            texts.append(text)
    return "\n\n".join(texts) or None


@transform("postcode")
def postcode(value: Any, state: MapState) -> str | None:
    """A postcode as written, upper-cased, with runs of spaces made one (``ls9 8ab`` is
    ``LS9 8AB``)."""
    text = text_of(value)
    return " ".join(text.upper().split()) if text else None
