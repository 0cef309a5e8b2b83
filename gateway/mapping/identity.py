"""Who the referral is about: one NHS number per person, and where each identity item was sent.

The record's identity items (NHS number, names, date of birth, referral identifier) decide
which person and which referral a message is filed under, so the gateway says exactly where
in the sender's message each came from (``provenance.elements``), refuses a patient who
carries two different NHS numbers, and refuses a date of birth in the future.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from gateway import nhs_number
from gateway.errors import InvalidContent
from gateway.mapping.runtime import Env

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
#: HL7 v2 markers of an NHS number in PID-3: identifier type NH, or assigning authority NHS.
_V2_NHS_AUTHORITIES = ("NHS", "2.16.840.1.113883.2.1.4.1")


def first_resource(env: Env, context: str) -> dict[str, Any] | None:
    """The resource (or segment) a context holds, if any."""
    found = env.contexts.get(context)
    value = found[0] if found else None
    return value if isinstance(value, dict) else None


def resource_location(env: Env, resource: dict[str, Any]) -> str:
    """A FHIRPath from the message root to ``resource`` (``Bundle.entry[2].resource``)."""
    if resource is env.root:
        return str(resource.get("resourceType") or "")
    entries = env.index.entries
    for entry, candidate in entries:
        if candidate is resource:
            return f"Bundle.entry[{entry}].resource"
    # A parsed message holds each object at one place only, so an entry's resource is never
    # also contained: the contained resources are looked at only when no entry matched.
    for entry, candidate in entries:
        if "contained" not in candidate:
            continue
        for position, inner in enumerate(_as_list(candidate.get("contained"))):
            if inner is resource:
                return f"Bundle.entry[{entry}].resource.contained[{position}]"
    for position, inner in enumerate(_as_list(env.root.get("contained"))):
        if inner is resource:
            return f"{env.root.get('resourceType')}.contained[{position}]"
    return str(resource.get("resourceType") or "")


def _as_list(value: Any) -> list[Any]:
    """A JSON value as a list (a single object becomes a list of one)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _fhir_nhs_numbers(patient: dict[str, Any], base: str) -> list[tuple[str, str]]:
    """(location, normalised value) of every NHS number identifier on a FHIR Patient."""
    out = []
    for position, ident in enumerate(_as_list(patient.get("identifier"))):
        if isinstance(ident, dict) and ident.get("system") == NHS_NUMBER_SYSTEM:
            value = ident.get("value")
            if isinstance(value, str) and value.strip():
                out.append((f"{base}.identifier[{position}].value", nhs_number.normalise(value)))
    return out


def _v2_nhs_numbers(pid: dict[str, Any]) -> list[tuple[str, str]]:
    """(location, normalised value) of every PID-3 repetition marked as an NHS number."""
    out = []
    reps = pid.get("3") or []
    for position, rep in enumerate(reps, start=1):
        if not isinstance(rep, dict):
            continue
        authority = rep.get("4")
        # HD: a namespace id (NHS) in part 1, or the NHS OID as universal id in part 2.
        names = (
            (authority.get("1"), authority.get("2"))
            if isinstance(authority, dict)
            else (authority,)
        )
        if rep.get("5") == "NH" or any(n in _V2_NHS_AUTHORITIES for n in names):
            value = rep.get("1")
            if isinstance(value, str) and value.strip():
                where = f"PID-3[{position}].1" if len(reps) > 1 else "PID-3.1"
                out.append((where, nhs_number.normalise(value)))
    return out


def nhs_numbers(env: Env, v2: bool) -> list[tuple[str, str]]:
    """Every NHS number the sender gave for the patient, with where it was given."""
    patient = first_resource(env, "patient")
    if patient is None:
        return []
    if v2:
        return _v2_nhs_numbers(patient)
    return _fhir_nhs_numbers(patient, resource_location(env, patient))


def check_one_nhs_number(numbers: list[tuple[str, str]]) -> None:
    """Refuse a patient given two different NHS numbers, naming both places."""
    distinct = {value for _, value in numbers}
    if len(distinct) > 1:
        first = numbers[0]
        other = next(n for n in numbers if n[1] != first[1])
        raise InvalidContent(
            f"the patient has two different NHS numbers, at {first[0]} and {other[0]}; "
            "send the one that identifies the person",
            expression=f"{first[0]} | {other[0]}",
        )


def invalid_nhs_number_location(numbers: list[tuple[str, str]]) -> str | None:
    """Where the first NHS number failing the modulus-11 check was given, if any."""
    return next((where for where, value in numbers if not nhs_number.is_valid(value)), None)


def check_birth_date(record: dict[str, Any], where: str, today: date | None = None) -> None:
    """Refuse a date of birth in the future."""
    born = (record.get("person") or {}).get("date_of_birth")
    if isinstance(born, str) and born > (today or date.today()).isoformat():
        raise InvalidContent(f"date of birth {born} is in the future", expression=where)


def elements(
    record: dict[str, Any], env: Env, numbers: list[tuple[str, str]], v2: bool, describe: Any
) -> dict[str, str]:
    """Where each identity item of ``record`` was found in the sender's message."""
    person = record.get("person") or {}
    out: dict[str, str] = {}
    number = person.get("nhs_number")
    if number:
        at = next((where for where, value in numbers if value == number), None)
        if at:
            out["person.nhs_number"] = at
    patient = first_resource(env, "patient")
    if patient is not None and not v2:
        base = resource_location(env, patient)
        for position, name in enumerate(_as_list(patient.get("name"))):
            if isinstance(name, dict) and name.get("family") == person.get("family_name"):
                out["person.family_name"] = f"{base}.name[{position}].family"
                if name.get("given"):
                    out["person.given_name"] = f"{base}.name[{position}].given"
                break
        if "birthDate" in patient:
            out["person.date_of_birth"] = f"{base}.birthDate"
    if patient is not None and v2:
        for position, name in enumerate(_as_list(patient.get("5")), start=1):
            if isinstance(name, dict) and name.get("1") == person.get("family_name"):
                out["person.family_name"] = f"PID-5[{position}].1"
                out["person.given_name"] = f"PID-5[{position}].2"
                break
        if "7" in patient:
            out["person.date_of_birth"] = "PID-7"
    referral = first_resource(env, "referral")
    identifier = (record.get("referral") or {}).get("identifier")
    if referral is not None and identifier and not v2:
        base = resource_location(env, referral)
        for position, ident in enumerate(_as_list(referral.get("identifier"))):
            if isinstance(ident, dict) and ident.get("value") == identifier:
                out["referral.identifier"] = f"{base}.identifier[{position}].value"
                break
        else:
            if referral.get("id") == identifier:
                out["referral.identifier"] = f"{base}.id"
    for item in ("person.family_name", "person.given_name", "person.date_of_birth"):
        if item not in out:
            found = describe(item)
            if found:
                out[item] = found
    if "referral.identifier" not in out and identifier:
        found = describe("referral.identifier")
        if found:
            out["referral.identifier"] = found
    return out
