"""RRI^I12 from an outcome: structure, escaping, round trips through our parser and hl7apy."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from gateway.config import ROOT
from gateway.hl7v2.er7 import parse
from gateway.hl7v2.message import V2Message
from gateway.outbound.hl7v2.rri import build_rri, dtm, escape

RECORD: dict[str, Any] = orjson.loads(
    (ROOT / "fixtures/gp-v2/01-new-referral.record.json").read_bytes()
)
NOW = datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)
AWKWARD = "Goals met | discharged ^ well & happy ~ C:\\path\\ end"


def outcome(**changes: Any) -> dict[str, Any]:
    """A completed outcome with something in every part the RRI carries."""
    data: dict[str, Any] = {
        "outcome_id": "out-1",
        "status": "completed",
        "status_reason": AWKWARD,
        "occurred_at": "2026-12-01T09:30:00+00:00",
        "link_worker": "Sam Okafor",
        "assessments": [
            {"instrument": "swemwbs", "score": 24, "date": "2026-11-30"},
            {"instrument": "wemwbs", "score": 51.5, "date": "2026-11-30"},
            {"instrument": "ucla3", "score": 5, "date": "2026-11-29"},
            {
                "instrument": "pam",
                "coding": {"system": "http://snomed.info/sct", "code": "1234567", "display": "X"},
                "score": 62,
                "date": "2026-11-28",
            },
        ],
        "activities": [
            {
                "description": "Walking group",
                "provider": "Leeds Ramblers",
                "status": "started",
                "start": "2026-11-10",
            }
        ],
        "closure": {"date": "2026-12-01", "reason": "Goals met"},
        "clinical_summary": "First line\nSecond line\r\nThird | line",
    }
    data.update(changes)
    return data


def payload(record: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A v2 write-back outbox payload for the gp-v2 fixture's referral."""
    return {
        "referral": {
            "id": "0b6f3c1e-ref",
            "source": "gp-v2",
            "identifier": "GPREF1001",
            "version": 1,
            "record": record if record is not None else RECORD,
        },
        "outcome": outcome(**changes),
        "outcome_seq": 42,
    }


def rri(data: dict[str, Any] | None = None, control_id: str = "SPGW42") -> bytes:
    """The RRI for ``data`` (the default payload when None)."""
    return build_rri(data or payload(), control_id=control_id, now=NOW)


def parsed(data: dict[str, Any] | None = None) -> V2Message:
    """The RRI read back by the gateway's own ER7 parser."""
    return parse(rri(data))


def test_segments_in_rri_i12_order() -> None:
    names = [name for name, _ in parsed().segments]
    assert names == [
        "MSH",
        "MSA",
        "RF1",
        "PRD",
        "PRD",
        "PID",
        "OBR",
        "OBX",
        "OBX",
        "OBX",
        "OBX",
        "PV1",
        "NTE",
        "NTE",
        "NTE",
        "NTE",
    ]
    raw = rri()
    assert raw.endswith(b"\r") and b"\n" not in raw
    assert b"\x0b" not in raw and b"\x1c" not in raw


def test_header_answers_the_original_sender() -> None:
    message = parsed()
    assert message.message_type == "RRI^I12"
    assert message.value("MSH", 9, 3) == "RRI_I12"
    assert message.value("MSH", 3) == "SPGW"
    assert message.value("MSH", 4) == "SP-GATEWAY"
    assert message.value("MSH", 6) == "B99002"  # the practice that sent the REF (MSH-4 there)
    assert message.value("MSH", 7) == "20261201100005+0000"
    assert message.control_id == "SPGW42"
    assert message.value("MSH", 11) == "P"
    assert message.version == "2.5.1"
    assert message.value("MSH", 18) == "UNICODE UTF-8"
    assert (message.value("MSA", 1), message.value("MSA", 2)) == ("AA", "GP0001")


def test_receiver_falls_back_from_return_address_to_referrer_to_practice() -> None:
    record = copy.deepcopy(RECORD)
    record["referral"]["return_response_to"] = {"ods_code": "R1A"}
    assert parsed(payload(record)).value("MSH", 6) == "R1A"
    del record["referral"]["return_response_to"]
    record["referral"]["referrer"]["ods_code"] = "Y12345"
    assert parsed(payload(record)).value("MSH", 6) == "Y12345"
    del record["referral"]["referrer"]["ods_code"]
    assert parsed(payload(record)).value("MSH", 6) == "B99002"


def test_no_msa_when_the_original_control_id_is_unknown() -> None:
    record = copy.deepcopy(RECORD)
    del record["provenance"]["source_message_id"]
    assert "MSA" not in parsed(payload(record)).tree


def test_rf1_status_identifier_and_dates() -> None:
    message = parsed()
    assert message.value("RF1", 1, 1) == "A"
    assert message.value("RF1", 1, 2) == "completed"
    assert message.value("RF1", 1, 3) == "HL70283"
    assert message.value("RF1", 6) == "GPREF1001"
    assert message.value("RF1", 7) == "20261201093000+0000"
    assert (message.value("RF1", 11, 1), message.value("RF1", 11, 2)) == ("0b6f3c1e-ref", "SPGW")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("accepted", "A"),
        ("in-progress", "A"),
        ("on-hold", "A"),
        ("completed", "A"),
        ("rejected", "R"),
        ("cancelled", "R"),
        ("failed", "R"),
        ("requested", "P"),
        ("entered-in-error", "P"),
    ],
)
def test_task_status_to_table_0283(status: str, code: str) -> None:
    message = parsed(payload(status=status))
    assert (message.value("RF1", 1, 1), message.value("RF1", 1, 2)) == (code, status)


def test_providers_referrer_and_service() -> None:
    message = parsed()
    rp, rt = message.tree["PRD"]
    assert rp["1"] == [{"1": "RP"}]
    assert rp["2"] == [{"1": "Dr Amara Mensah"}]
    assert rp["4"] == [{"4": "Riverside Medical Practice"}]
    assert rp["5"] == [
        {"1": "01632 960900", "2": "WPN", "3": "PH"},
        {"2": "NET", "3": "Internet", "4": "riverside.gp@nhs.example.net"},
    ]
    assert rp["7"] == [{"1": "B99002", "2": "ODS"}]
    assert rt["1"] == [{"1": "RT"}]
    assert rt["2"] == [{"1": "Sam Okafor"}]  # the link worker
    assert rt["4"] == [{"4": "Northgate Social Prescribing Service"}]
    assert rt["7"] == [{"1": "C99003", "2": "ODS"}]
    no_worker = parsed(payload(link_worker=None)).tree["PRD"][1]
    assert no_worker["2"] == [{"1": "Northgate Social Prescribing Service"}]


def test_patient() -> None:
    pid = parsed().tree["PID"][0]
    assert pid["3"] == [{"1": "9990000018", "4": "NHS", "5": "NH"}]
    assert pid["5"] == [{"1": "Ellis", "2": "Margaret", "3": "Joan"}]
    assert pid["7"] == [{"1": "19480314"}]
    assert pid["8"] == [{"1": "F"}]


def test_an_obx_per_assessment() -> None:
    message = parsed()
    obr = message.tree["OBR"][0]
    assert obr["4"] == [{"1": "SPOUTCOME", "2": "Social prescribing outcome", "3": "L"}]
    rows = [
        (
            obx["1"][0]["1"],
            obx["2"][0]["1"],
            obx["3"][0],
            obx["5"][0]["1"],
            obx["6"][0]["1"],
            obx["11"][0]["1"],
            obx["14"][0]["1"],
        )
        for obx in message.tree["OBX"]
    ]
    swemwbs = {"1": "718466001", "2": "Short Warwick-Edinburgh Mental Well-being Scale score"}
    wemwbs = {"1": "718426000", "2": "Warwick-Edinburgh Mental Well-being Scale score"}
    assert rows == [
        ("1", "NM", {**swemwbs, "3": "SCT"}, "24", "{score}", "F", "20261130"),
        ("2", "NM", {**wemwbs, "3": "SCT"}, "51.5", "{score}", "F", "20261130"),
        (
            "3",
            "NM",
            {"1": "ucla3", "2": "UCLA 3-item loneliness scale score", "3": "L"},
            "5",
            "{score}",
            "F",
            "20261129",
        ),
        ("4", "NM", {"1": "1234567", "2": "X", "3": "SCT"}, "62", "{score}", "F", "20261128"),
    ]


def test_a_local_coding_keeps_the_instrument_with_system_l() -> None:
    assessment = {
        "instrument": "mycaw",
        "coding": {"system": "urn:local", "code": "MYCAW", "display": "Measure Yourself"},
        "score": 3,
        "date": "2026-11-30",
    }
    obx = parsed(payload(assessments=[assessment])).tree["OBX"][0]
    assert obx["3"] == [{"1": "mycaw", "2": "Measure Yourself", "3": "L"}]


def test_no_observation_group_without_assessments() -> None:
    message = parsed(payload(assessments=[]))
    assert "OBR" not in message.tree and "OBX" not in message.tree


def test_notes_round_trip_with_escapes_and_line_breaks() -> None:
    notes = parsed().tree["NTE"]
    assert [n["3"][0]["1"] for n in notes] == [
        AWKWARD,
        "Walking group (started, from 2026-11-10), provided by Leeds Ramblers",
        "Closed 2026-12-01: Goals met",
        "First line\nSecond line\nThird | line",
    ]
    assert [n["4"][0]["1"] for n in notes] == ["STATUS", "ACTIVITY", "CLOSURE", "SUMMARY"]
    assert all(n["_after"] == "PV1" for n in notes)  # message-level, not OBX notes
    raw = rri()
    assert b"Goals met \\F\\ discharged \\S\\ well \\T\\ happy \\R\\ C:\\E\\path\\E\\ end" in raw
    assert b"First line\\.br\\Second line\\.br\\Third \\F\\ line" in raw


def test_only_the_notes_there_is_something_for() -> None:
    message = parsed(
        payload(
            status="accepted",
            status_reason=None,
            activities=[],
            closure=None,
            clinical_summary=None,
        )
    )
    assert "NTE" not in message.tree and "PV1" not in message.tree


def test_awkward_text_everywhere_round_trips() -> None:
    record = copy.deepcopy(RECORD)
    record["referral"]["referrer"]["name"] = "Dr O'Brien | Smith^Jones"
    record["person"]["family_name"] = "Smith-Jones & Co~"
    data = payload(record, link_worker="A\\B", clinical_summary="tab\there, bell\x07, é, 中文")
    message = parse(build_rri(data, control_id="SPGW|1", now=NOW))
    assert message.tree["PRD"][0]["2"] == [{"1": "Dr O'Brien | Smith^Jones"}]
    assert message.value("PID", 5) == "Smith-Jones & Co~"
    assert message.tree["PRD"][1]["2"] == [{"1": "A\\B"}]
    assert message.tree["NTE"][-1]["3"][0]["1"] == "tab\there, bell\x07, é, 中文"
    assert message.control_id == "SPGW|1"


def test_escape() -> None:
    assert escape("plain") == "plain"
    assert escape("a|b^c&d~e\\f") == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"
    assert escape("one\ntwo\r\nthree\rfour") == "one\\.br\\two\\.br\\three\\.br\\four"
    assert escape("\x0b\x1c\x7f\t") == "\\X0B\\\\X1C\\\\X7F\\\t"
    assert escape("") == ""


def test_dtm() -> None:
    assert dtm(None) == ""
    assert dtm("1948-03-14") == "19480314"
    assert dtm("1948-03") == "194803"
    assert dtm("2026-12-01T09:30:00Z") == "20261201093000+0000"
    assert dtm("2026-12-01T09:30:00+01:00") == "20261201093000+0100"
    assert dtm("2026-12-01T09:30:00") == "20261201093000"


def test_hl7apy_reads_it() -> None:
    text = rri().decode("utf-8")
    message = parse_message(text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True)
    assert message.name == "RRI_I12"
    assert message.msh.msh_10.value == "SPGW42"
    assert message.msa.msa_1.value == "AA"
    assert message.msa.msa_2.value == "GP0001"
    assert message.rf1.rf1_6.value == "GPREF1001"
    assert message.pid.pid_3.value == "9990000018^^^NHS^NH"
    observation = message.rri_i12_observation
    assert len(observation.children.get("RRI_I12_RESULTS_NOTES")) == 4
    notes = message.children.get("NTE")
    assert len(notes) == 4  # message-level NTEs, after the PV1 group
    assert notes[0].nte_3.value == escape(AWKWARD)


def test_hl7apy_strict_validation_passes_when_names_fit_its_lengths() -> None:
    # hl7apy checks HD-1 (PL-4's facility) against 20 characters; the fixture's service names
    # are longer, as the REF^I12 they came in was. Shortened, the structure validates strictly.
    record = copy.deepcopy(RECORD)
    record["referral"]["referrer"]["service"] = "Riverside MP"
    record["referral"]["referral_to"]["name"] = "Northgate SPS"
    text = rri(payload(record)).decode("utf-8")
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert message.validate()
