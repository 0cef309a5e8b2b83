"""An outcome as HL7 v2 RRI^I12 (return referral information) for sources that referred by REF^I12.

The message, in ER7 with the standard separators, UTF-8 (declared in MSH-18)::

    MSH  SPGW / SP-GATEWAY to the original sender (MSH-6 = its ODS code), RRI^I12^RRI_I12
    MSA  AA, MSA-2 = the original REF's MSH-10 (left out when the record does not know it)
    RF1  status (table 0283) with the Task status as its text, originating referral identifier,
         effective date = when the outcome happened, our referral id as external identifier
    PRD  RP: the referrer, from the record
    PRD  RT: the social prescribing service (PRD-2 the link worker when the outcome names one)
    PID  NHS number, name, date of birth, sex
    OBR  one observation group holding an OBX per assessment (only when there are assessments)
    PV1  patient class N, only there so the NTEs after it are message-level notes
    NTE  status reason, each activity, the closure, the clinical summary

Version: 2.5.1. The RRI should carry the version of the REF it answers, but the record keeps
only the original message's control id (provenance.source_message_id), not its MSH-12.

Table 0283 has no "in progress": accepted, in-progress, on-hold and completed are A (the
referral was accepted), rejected, cancelled and failed are R; requested and entered-in-error
have no 0283 equivalent and go as P (pending). RF1-1.2 always says the exact Task status.

Free text goes through ``escape``: the separators become \\F\\ \\S\\ \\T\\ \\R\\ \\E\\, line
breaks \\.br\\, other control characters \\Xhh\\ (so nothing can break a segment or an MLLP frame).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from gateway.hl7v2.ack import APPLICATION, FACILITY

VERSION = "2.5.1"
SNOMED = "http://snomed.info/sct"
#: Outcome (Task) status to HL7 table 0283 (referral status).
STATUS_0283: dict[str, tuple[str, str]] = {
    "requested": ("P", "Pending"),
    "accepted": ("A", "Accepted"),
    "in-progress": ("A", "Accepted"),
    "on-hold": ("A", "Accepted"),
    "completed": ("A", "Accepted"),
    "rejected": ("R", "Rejected"),
    "cancelled": ("R", "Rejected"),
    "failed": ("R", "Rejected"),
    "entered-in-error": ("P", "Pending"),
}
#: Instruments with a SNOMED CT code for their score.
INSTRUMENT_CODES: dict[str, tuple[str, str]] = {
    "wemwbs": ("718426000", "Warwick-Edinburgh Mental Well-being Scale score"),
    "swemwbs": ("718466001", "Short Warwick-Edinburgh Mental Well-being Scale score"),
}
INSTRUMENT_NAMES = {
    "ons4-life-satisfaction": "ONS4 life satisfaction",
    "ons4-worthwhile": "ONS4 feeling that things done in life are worthwhile",
    "ons4-happiness": "ONS4 happiness yesterday",
    "ons4-anxiety": "ONS4 anxiety yesterday",
    "ucla3": "UCLA 3-item loneliness scale score",
}
SEXES = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
#: NTE-4 comment types (local codes) saying what each note is.
NOTE_TYPES = {
    "status": "STATUS^Status reason^L",
    "activity": "ACTIVITY^Activity^L",
    "closure": "CLOSURE^Closure^L",
    "summary": "SUMMARY^Clinical summary^L",
}
_ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}
_PARTIAL_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def escape(text: str) -> str:
    """``text`` safe inside one ER7 component: separators and the escape character as escape
    sequences, line breaks as \\.br\\, other control characters as \\Xhh\\."""
    out: list[str] = []
    for char in text.replace("\r\n", "\n").replace("\r", "\n"):
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char == "\n":
            out.append("\\.br\\")
        elif (ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F:
            out.append(f"\\X{ord(char):02X}\\")
        else:
            out.append(char)
    return "".join(out)


def _components(*values: str | None) -> str:
    """Escaped components joined with ^, trailing empty ones dropped."""
    return "^".join(escape(v or "") for v in values).rstrip("^")


def _segment(name: str, *fields: str) -> str:
    """A segment from already-escaped fields, trailing empty ones dropped."""
    return "|".join((name, *fields)).rstrip("|")


def dtm(value: str | datetime | None) -> str:
    """An ISO date or date-time as an HL7 DTM (YYYYMMDD[HHMMSS[+ZZZZ]]); '' when absent."""
    if not value:
        return ""
    if isinstance(value, str) and _PARTIAL_DATE.match(value):
        return value.replace("-", "")
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    text = when.strftime("%Y%m%d%H%M%S")
    return text + when.strftime("%z") if when.tzinfo else text


def _number(value: float | int) -> str:
    """A score as NM: no trailing .0 on whole numbers."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def _telecom(contact: dict[str, Any] | None) -> str:
    """XTN repetitions: work phone, mobile, email."""
    contact = contact or {}
    reps = []
    if contact.get("phone"):
        reps.append(_components(contact["phone"], "WPN", "PH"))
    if contact.get("mobile"):
        reps.append(_components(contact["mobile"], "WPN", "CP"))
    if contact.get("email"):
        reps.append(_components("", "NET", "Internet", contact["email"]))
    return "~".join(reps)


def _ods(code: str | None) -> str:
    """A PRD-7 provider identifier (ODS code^ODS), or ''."""
    return _components(code, "ODS") if code else ""


def _receiver(record: dict[str, Any]) -> str:
    """The ODS code of the organisation that sent the referral and expects the answer."""
    referral = record.get("referral") or {}
    for org in (
        referral.get("return_response_to"),
        referral.get("referrer"),
        record.get("gp_practice"),
    ):
        if org and org.get("ods_code"):
            return str(org["ods_code"])
    return ""


def _msh(record: dict[str, Any], control_id: str, now: datetime) -> str:
    return _segment(
        "MSH",
        "^~\\&",
        APPLICATION,
        FACILITY,
        "",
        escape(_receiver(record)),
        dtm(now),
        "",
        "RRI^I12^RRI_I12",
        escape(control_id),
        "P",
        VERSION,
        "",
        "",
        "",
        "",
        "",
        "UNICODE UTF-8",
    )


def _rf1(payload: dict[str, Any], outcome: dict[str, Any]) -> str:
    status = outcome["status"]
    code, _ = STATUS_0283[status]
    referral = payload["referral"]
    return _segment(
        "RF1",
        _components(code, status, "HL70283"),
        "",
        "",
        "",
        "",
        _components(referral["identifier"]),
        dtm(outcome["occurred_at"]),
        "",
        "",
        "",
        _components(referral.get("id"), APPLICATION),
    )


def _prd_referrer(record: dict[str, Any]) -> str:
    referrer = (record.get("referral") or {}).get("referrer") or {}
    # The record keeps the referrer's name as one string ("Dr Amara Mensah"): it goes in
    # XPN-1 whole rather than being split into guessed family and given names.
    return _segment(
        "PRD",
        "RP",
        _components(referrer.get("name")),
        "",
        _components("", "", "", referrer.get("service")),
        _telecom(referrer.get("contact")),
        "",
        _ods(referrer.get("ods_code")),
    )


def _prd_service(record: dict[str, Any], outcome: dict[str, Any]) -> str:
    service = (record.get("referral") or {}).get("referral_to") or {}
    name = service.get("name")
    return _segment(
        "PRD",
        "RT",
        _components(outcome.get("link_worker") or name),
        "",
        _components("", "", "", name),
        "",
        "",
        _ods(service.get("ods_code")),
    )


def _pid(record: dict[str, Any]) -> str:
    person = record.get("person") or {}
    nhs = person.get("nhs_number")
    given, _, middle = (person.get("given_name") or "").partition(" ")
    return _segment(
        "PID",
        "1",
        "",
        _components(nhs, "", "", "NHS", "NH") if nhs else "",
        "",
        _components(person.get("family_name"), given, middle.strip()),
        "",
        dtm(person.get("date_of_birth")),
        SEXES.get(person.get("sex") or "", ""),
    )


def _observation_code(assessment: dict[str, Any]) -> str:
    """OBX-3: SNOMED CT where the instrument has a code, else the instrument, local."""
    instrument = assessment["instrument"]
    coding = assessment.get("coding") or {}
    if instrument in INSTRUMENT_CODES:
        code, display = INSTRUMENT_CODES[instrument]
        return _components(code, display, "SCT")
    if coding.get("system") == SNOMED and coding.get("code"):
        return _components(coding["code"], coding.get("display"), "SCT")
    display = coding.get("display") or INSTRUMENT_NAMES.get(instrument) or instrument
    return _components(instrument, display, "L")


def _observations(outcome: dict[str, Any]) -> list[str]:
    assessments = outcome.get("assessments") or []
    if not assessments:
        return []
    segments = [
        _segment(
            "OBR",
            "1",
            "",
            "",
            "SPOUTCOME^Social prescribing outcome^L",
            "",
            "",
            dtm(outcome["occurred_at"]),
        )
    ]
    for number, assessment in enumerate(assessments, 1):
        segments.append(
            _segment(
                "OBX",
                str(number),
                "NM",
                _observation_code(assessment),
                "",
                _number(assessment["score"]),
                "{score}^{score}^UCUM",
                "",
                "",
                "",
                "",
                "F",
                "",
                "",
                dtm(assessment["date"]),
            )
        )
    return segments


def _activity_text(activity: dict[str, Any]) -> str:
    text = f"{activity['description']} ({activity['status']}"
    if activity.get("start"):
        text += f", from {activity['start']}"
    text += ")"
    if activity.get("provider"):
        text += f", provided by {activity['provider']}"
    coding = activity.get("coding") or {}
    if coding.get("code"):
        system = "SNOMED CT" if coding.get("system") == SNOMED else coding.get("system")
        text += f" [{system} {coding['code']}]"
    return text


def _notes(outcome: dict[str, Any]) -> list[tuple[str, str]]:
    """(note type, text) for each message-level note, in reading order."""
    notes: list[tuple[str, str]] = []
    if outcome.get("status_reason"):
        notes.append(("status", outcome["status_reason"]))
    for activity in outcome.get("activities") or []:
        notes.append(("activity", _activity_text(activity)))
    closure = outcome.get("closure")
    if closure:
        notes.append(("closure", f"Closed {closure['date']}: {closure['reason']}"))
    if outcome.get("clinical_summary"):
        notes.append(("summary", outcome["clinical_summary"]))
    return notes


def build_rri(payload: dict[str, Any], *, control_id: str, now: datetime) -> bytes:
    """The RRI^I12 for a v2 write-back outbox payload ({referral, outcome, outcome_seq}).

    ``control_id`` becomes MSH-10; give the same one on every resend of one outcome so that
    the receiver can de-duplicate. Raises KeyError or ValueError when the payload lacks what
    the message needs (the outcome's status or date, the referral identifier).
    """
    record: dict[str, Any] = payload["referral"]["record"]
    outcome: dict[str, Any] = payload["outcome"]
    segments = [_msh(record, control_id, now)]
    original = (record.get("provenance") or {}).get("source_message_id")
    if original:
        segments.append(_segment("MSA", "AA", escape(original)))
    segments += [
        _rf1(payload, outcome),
        _prd_referrer(record),
        _prd_service(record, outcome),
        _pid(record),
        *_observations(outcome),
    ]
    notes = _notes(outcome)
    if notes:
        segments.append("PV1|1|N")
        for number, (kind, text) in enumerate(notes, 1):
            segments.append(_segment("NTE", str(number), "L", escape(text), NOTE_TYPES[kind]))
    return ("\r".join(segments) + "\r").encode("utf-8")
