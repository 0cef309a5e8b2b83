"""Transforms for HL7 v2 data types (dates, names, addresses, telecoms, coded elements).

Values arrive as the parser leaves them: a repetition is {"1": component, ...}, a component
is text or {"1": sub-component, ...}. Escape sequences are already decoded.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from gateway.errors import InvalidContent
from gateway.mapping.transforms import MapState, transform

#: HL7 table 0396 coding system names to FHIR code system URLs.
CODE_SYSTEMS = {
    "SCT": "http://snomed.info/sct",
    "SNOMEDCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "LN": "http://loinc.org",
    "UCUM": "http://unitsofmeasure.org",
    "SNOMED": "http://snomed.info/sct",
    "SNOMED-CT": "http://snomed.info/sct",
    "2.16.840.1.113883.6.96": "http://snomed.info/sct",
    "LOINC": "http://loinc.org",
    "2.16.840.1.113883.6.1": "http://loinc.org",
    "READ": "http://read.info/readv2",
    "RD2": "http://read.info/readv2",
}
LOCAL_SYSTEM = "urn:sp-gateway:hl7v2-local:"
_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$")


def _part(value: Any, number: str = "1") -> str:
    """One component (or sub-component 1 of it) as stripped text."""
    if type(value) is dict:
        value = value.get(number)
        if type(value) is dict:
            value = value.get("1")
    return value.strip() if type(value) is str else ""


@transform("v2_date")
def v2_date(value: Any, state: MapState) -> str | None:
    """An HL7 DT/DTM (YYYYMMDD...) as an ISO date; partial or bad dates are diagnosed."""
    text = _part(value) if isinstance(value, dict) else (value or "").strip()
    match = _TS.match(text)
    if not match or not match.group(3):
        if text:
            state.diagnose("unparsed-date", "value is not a full HL7 date (YYYYMMDD)")
        return None
    return f"{match.group(1)}-{match.group(2)}-{match.group(3)}"


@transform("v2_datetime")
def v2_datetime(value: Any, state: MapState) -> str | None:
    """An HL7 DTM as ISO 8601 with an offset; times without one take the source's time zone."""
    text = _part(value) if isinstance(value, dict) else (value or "").strip()
    match = _TS.match(text)
    if not match:
        if text:
            state.diagnose("unparsed-date", "value is not an HL7 date-time")
        return None
    year, month, day, hour, minute, second, offset = match.groups()
    if hour is None:
        return "-".join(p for p in (year, month, day) if p)
    try:
        moment = datetime(
            int(year), int(month or 1), int(day or 1), int(hour), int(minute or 0), int(second or 0)
        )
        if offset:
            stamp = f"{moment.isoformat()}{offset[:3]}:{offset[3:]}"
            return datetime.fromisoformat(stamp).isoformat()
    except ValueError:
        # The digits have the right shape but name no moment (month 13, hour 25, +2500).
        raise InvalidContent(
            "value is not a valid HL7 date-time (a part is out of range)",
            expression=state.location,
        ) from None
    return moment.replace(tzinfo=state.timezone).isoformat()


@transform("v2_name")
def v2_name(value: Any, state: MapState) -> str | None:
    """A person's name from XPN (family^given^middle^suffix^prefix) or XCN (id^family^given...)."""
    if not isinstance(value, dict):
        return None
    return _joined_name(value, offset=0)


@transform("v2_given_names")
def v2_given_names(value: Any, state: MapState) -> str | None:
    """Given and middle names of an XPN (components 2 and 3)."""
    if not isinstance(value, dict):
        return None
    joined = " ".join(p for p in (_part(value, "2"), _part(value, "3")) if p)
    return joined or None


@transform("v2_clinician")
def v2_clinician(value: Any, state: MapState) -> str | None:
    """A clinician's name from XCN (id^family^given^middle^suffix^prefix)."""
    if not isinstance(value, dict):
        return None
    return _joined_name(value, offset=1)


def _joined_name(value: dict[str, Any], offset: int) -> str | None:
    """Prefix, given, middle and family names of an XPN (offset 0) or XCN (offset 1)."""
    family, given, middle, prefix = (_part(value, str(n + offset)) for n in (1, 2, 3, 5))
    joined = " ".join(p for p in (prefix, given, middle, family) if p)
    return joined or None


@transform("v2_address")
def v2_address(value: Any, state: MapState) -> dict[str, Any] | None:
    """An XAD (street^other^city^state^postcode^country) as {lines, city, district, postcode}."""
    if not isinstance(value, dict):
        return None
    out: dict[str, Any] = {}
    lines = [line for line in (_part(value, "1"), _part(value, "2")) if line]
    if lines:
        out["lines"] = lines
    for number, key in (("3", "city"), ("4", "district"), ("5", "postcode")):
        text = _part(value, number)
        if text:
            out[key] = text.upper() if key == "postcode" else text
    return out or None


@transform("v2_telecom", collection=True)
def v2_telecom(values: list[Any], state: MapState) -> dict[str, str] | None:
    """XTN repetitions as {phone, mobile, email, sms, preferred}; see ``_telecom_kind``."""
    out: dict[str, str] = {}
    best: tuple[float, str] | None = None
    for rep in values:
        if not isinstance(rep, dict):
            continue
        kind, address = _telecom_kind(rep)
        if not address:
            continue
        out.setdefault(kind, address)
        if kind == "sms":
            out.setdefault("mobile", address)
        order = _preference(rep) if "18" in rep else None
        if order is not None and (best is None or order < best[0]):
            best = (order, kind)
    if best is not None:
        out["preferred"] = best[1]
    return out or None


def _telecom_kind(rep: dict[str, Any]) -> tuple[str, str]:
    """What one XTN is and its address: use NET or equipment Internet/X.400 is an email
    (component 4, else 1); a number marked for texts (equipment SMS, or any-text XTN-9
    starting "SMS") is an sms; equipment CP a mobile; anything else a phone (component 1,
    else 12, else 7)."""
    use, kind = _part(rep, "2"), _part(rep, "3")
    if use == "NET" or kind in ("Internet", "X.400"):
        return "email", _part(rep, "4") or _part(rep, "1")
    number = _part(rep, "1") or _part(rep, "12") or _part(rep, "7")
    if kind.upper() == "SMS" or ("9" in rep and _part(rep, "9").upper().startswith("SMS")):
        return "sms", number
    return ("mobile" if kind == "CP" else "phone"), number


def _preference(rep: dict[str, Any]) -> float | None:
    """XTN-18 (preference order, v2.7 and later) as a number; lowest is preferred."""
    text = _part(rep, "18")
    try:
        return float(text) if text else None
    except ValueError:
        return None


@transform("v2_coding")
def v2_coding(value: Any, state: MapState) -> dict[str, str] | None:
    """A CE/CWE (code^text^system) as {system, code, display}; local systems get a URN."""
    if not isinstance(value, dict):
        return None
    code, display, system = _part(value, "1"), _part(value, "2"), _part(value, "3")
    if not code:
        if display:
            state.diagnose("incomplete-coding", "a coded element has text but no code")
        return None
    url = CODE_SYSTEMS.get(system.upper()) if system else None
    out = {"system": url or f"{LOCAL_SYSTEM}{system or 'unspecified'}", "code": code}
    if display:
        out["display"] = display
    return out


@transform("v2_number")
def v2_number(value: Any, state: MapState) -> float | None:
    """A numeric value (NM) as a number; anything else is diagnosed."""
    text = _part(value) if isinstance(value, dict) else str(value or "").strip()
    try:
        return float(text) if text else None
    except ValueError:
        state.diagnose("unparsed-number", "value is not a number")
        return None
