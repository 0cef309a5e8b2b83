"""Acknowledgements: MSH and MSA echo the message, ERR names the field in the version's style."""

from __future__ import annotations

import re

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from gateway.errors import (
    GatewayError,
    InvalidContent,
    InvalidMessage,
    NotSupported,
    PayloadTooLarge,
    RequiredMissing,
    StoreUnavailable,
    UnknownCode,
    UnsupportedMediaType,
)
from gateway.hl7v2.ack import APPLICATION, FACILITY, ack_code, build_ack, error_location
from gateway.hl7v2.er7 import parse
from gateway.hl7v2.message import V2Message
from gateway.intake.pipeline import InternalFault


def header(
    version: str = "2.5.1", control: str = "GP0001", trigger: str = "REF^I12^REF_I12"
) -> str:
    return f"MSH|^~\\&|GPSYS|B99002|SPGW|C99003|20261102101500||{trigger}|{control}|P|{version}"


def incoming(version: str = "2.5.1", control: str = "GP0001", **kwargs: str) -> V2Message:
    return parse(f"{header(version, control, **kwargs)}\rPID|1||9990000220^^^NHS^NH\r".encode())


def ack_of(message: V2Message | None, error: GatewayError | None = None) -> V2Message:
    """The ACK, parsed back with the gateway's parser (after checking its bytes)."""
    raw = build_ack(message, error)
    assert raw.endswith(b"\r")
    assert b"\n" not in raw
    return parse(raw)


# ----------------------------------------------------------------------------- ack codes


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (None, "AA"),
        (InvalidMessage("bad structure", expression="MSH.2"), "AE"),
        (InvalidContent("bad value", expression="PID.3"), "AE"),
        (RequiredMissing("no PID", expression="PID"), "AE"),
        (UnknownCode("code 'X'", expression="PV1.36.1"), "AE"),
        (NotSupported("ORU^R01 is not accepted", expression="MSH.9"), "AR"),
        (StoreUnavailable("retry later"), "AR"),
        (InternalFault("kept"), "AR"),
        (GatewayError("anything else"), "AR"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_ack_code(error: GatewayError | None, code: str) -> None:
    assert ack_code(error) == code
    assert ack_of(incoming(), error).value("MSA", 1) == code


def test_a_wrong_media_type_is_an_application_reject() -> None:
    assert ack_code(UnsupportedMediaType("send x-application/hl7-v2+er7")) == "AR"


def test_too_large_is_an_error_not_a_reject_since_a_resend_cannot_succeed() -> None:
    assert ack_code(PayloadTooLarge("too big")) == "AE"


# ----------------------------------------------------------------------------- MSH and MSA


def test_ack_header_and_msa_echo_the_message() -> None:
    ack = ack_of(incoming())
    msh = ack.tree["MSH"][0]
    assert [name for name, _ in ack.segments] == ["MSH", "MSA"]
    assert ack.encoding == incoming().encoding
    assert ack.value("MSH", 3) == APPLICATION
    assert ack.value("MSH", 4) == FACILITY
    assert ack.value("MSH", 5) == "GPSYS"  # back to the sender
    assert ack.value("MSH", 6) == "B99002"
    assert re.fullmatch(r"\d{14}[+-]\d{4}", ack.value("MSH", 7))
    assert msh["9"] == [{"1": "ACK", "2": "I12", "3": "ACK"}]
    assert ack.value("MSH", 11) == "P"
    assert ack.version == "2.5.1"
    assert ack.value("MSA", 1) == "AA"
    assert ack.value("MSA", 2) == "GP0001"
    assert "ERR" not in ack.tree


def test_every_ack_has_its_own_control_id() -> None:
    ids = {ack_of(incoming()).control_id for _ in range(20)}
    assert len(ids) == 20
    assert all(0 < len(i) <= 20 for i in ids)
    assert "GP0001" not in ids


@pytest.mark.parametrize("version", ["2.3", "2.4", "2.5", "2.5.1", "2.6"])
def test_version_is_echoed(version: str) -> None:
    assert ack_of(incoming(version)).version == version


def test_trigger_is_echoed() -> None:
    ack = ack_of(incoming(trigger="ADT^A03^ADT_A03"))
    assert ack.tree["MSH"][0]["9"] == [{"1": "ACK", "2": "A03", "3": "ACK"}]
    older = ack_of(incoming("2.3", trigger="REF^I14"))
    assert older.tree["MSH"][0]["9"] == [{"1": "ACK", "2": "I14", "3": "ACK"}]


def test_without_a_message_the_ack_is_generic() -> None:
    ack = ack_of(None, InvalidMessage("the message is empty", expression="MSH"))
    assert ack.value("MSH", 9) == "ACK"
    assert ack.tree["MSH"][0]["9"] == [{"1": "ACK"}]
    assert ack.version == "2.5.1"
    assert ack.value("MSA", 1) == "AE"
    assert ack.value("MSA", 2) == ""
    assert ack.value("MSH", 5) == ""


def test_msa_2_can_be_given() -> None:
    raw = build_ack(incoming(), StoreUnavailable("later"), control_id="OTHER1")
    assert parse(raw).value("MSA", 2) == "OTHER1"


def test_control_ids_and_names_with_separators_are_escaped() -> None:
    message = parse(
        b"MSH|^~\\&|GP\\F\\SYS|B99\\S\\002|SPGW|C99003|20261102101500||REF^I12|A\\T\\1\\R\\2|P|2.4\r"
    )
    assert message.control_id == "A&1~2"
    raw = build_ack(message)
    assert b"|A\\T\\1\\R\\2\r" in raw
    ack = parse(raw)
    assert ack.value("MSA", 2) == "A&1~2"
    assert ack.value("MSH", 5) == "GP|SYS"
    assert ack.value("MSH", 6) == "B99^002"


def test_the_ack_uses_the_message_encoding_characters() -> None:
    message = parse(
        b"MSH*!@#$*GPSYS*B99002*SPGW*C99003*20261102101500**REF!I12!REF_I12*X!1*P*2.5.1\r"
        b"PID*1**9990000220!!!NHS!NH\r"
    )
    raw = build_ack(message, InvalidContent("bad * value ! here", expression="PID.3"))
    assert raw.startswith(b"MSH*!@#$*SPGW*")
    ack = parse(raw)
    assert ack.tree["MSH"][0]["9"] == [{"1": "ACK", "2": "I12", "3": "ACK"}]
    assert ack.value("MSA", 2) == "X"  # X!1 is two components of MSH-10; the first is echoed
    assert ack.value("ERR", 2) == "PID"
    assert ack.tree["ERR"][0]["8"] == [{"1": "bad * value ! here"}]


# ----------------------------------------------------------------------------- ERR


def test_err_for_v2_5_and_later_uses_err_2_3_4_and_8() -> None:
    error = InvalidContent("NHS number is not valid", expression="PID.3.where(5 = 'NH').1")
    ack = ack_of(incoming("2.5.1"), error)
    err = ack.tree["ERR"][0]
    assert "1" not in err
    assert err["2"] == [{"1": "PID", "2": "1", "3": "3"}]  # ERL: segment, sequence, field
    assert err["3"] == [{"1": "102", "2": "NHS number is not valid", "3": "HL70357"}]
    assert err["4"] == [{"1": "E"}]
    assert err["8"] == [{"1": "NHS number is not valid"}]


def test_err_names_the_component_when_the_path_does() -> None:
    error = UnknownCode("code '01' is not in code map", expression="PV1.36.1")
    err = ack_of(incoming("2.5"), error).tree["ERR"][0]
    assert err["2"] == [{"1": "PV1", "2": "1", "3": "36", "5": "1"}]
    assert err["3"][0]["1"] == "103"


def test_err_for_v2_3_and_2_4_uses_err_1() -> None:
    error = RequiredMissing("the message has no patient (PID)", expression="PID.5")
    for version in ("2.3", "2.4"):
        err = ack_of(incoming(version), error).tree["ERR"][0]
        assert set(err) == {"_seq", "1"}
        assert err["1"] == [
            {
                "1": "PID",
                "2": "1",
                "3": "5",
                "4": {"1": "101", "2": "the message has no patient (PID)"},
            }
        ]


def test_an_application_reject_is_severity_f() -> None:
    err = ack_of(incoming(), NotSupported("ORU^R01", expression="MSH.9")).tree["ERR"][0]
    assert err["2"] == [{"1": "MSH", "2": "1", "3": "9"}]
    assert err["3"][0]["1"] == "200"
    assert err["4"] == [{"1": "F"}]
    transient = ack_of(incoming(), StoreUnavailable("retry later")).tree["ERR"][0]
    assert transient["3"][0]["1"] == "207"
    assert "2" not in transient  # no location to name


@pytest.mark.parametrize("version", ["2.4", "2.5.1"])
def test_separators_and_line_breaks_in_err_text_are_escaped(version: str) -> None:
    text = "value a|b^c&d~e\\f\r\nnext line"
    raw = build_ack(incoming(version), InvalidContent(text, expression="NTE.3"))
    assert raw.count(b"\r") == 3  # MSH, MSA, ERR: no segment break inside the text
    assert b"a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f  next line" in raw
    err = parse(raw).tree["ERR"][0]
    expected = "value a|b^c&d~e\\f  next line"
    if version == "2.4":
        assert err["1"][0]["4"]["2"] == expected
    else:
        assert err["8"] == [{"1": expected}]
        assert err["3"][0]["2"] == expected


def test_err_3_text_is_never_cut_inside_an_escape() -> None:
    text = "x" * 78 + "|" + "y" * 10
    err = ack_of(incoming(), InvalidContent(text, expression="NTE.3")).tree["ERR"][0]
    assert err["3"][0]["2"] in (text[:n] for n in range(len(text) + 1))


@pytest.mark.parametrize("version", ["2.4", "2.5.1"])
def test_err_names_a_missing_segment(version: str) -> None:
    error = RequiredMissing("the message has no zsp (ZSP)", expression="ZSP")
    ack = ack_of(incoming(version), error)
    assert ack.value("ERR", 1 if version == "2.4" else 2) == "ZSP"


def test_error_location() -> None:
    assert error_location("PID.3.where(5 = 'NH' or 4.1 = 'NHS').1") == ("PID", "3", "")
    assert error_location("PV1.36.1") == ("PV1", "36", "1")
    assert error_location("MSH.10") == ("MSH", "10", "")
    assert error_location("segment[3]") == ("", "", "")
    assert error_location(None) == ("", "", "")


@pytest.mark.parametrize(
    ("expression", "where"),
    [
        ("PID-3", "PID^1^3^^"),
        ("PID-3.1", "PID^1^3^^1"),
        ("PID-3[2].1", "PID^1^3^2^1"),
        ("OBX[2]-5", "OBX^2^5^^"),
        ("PID.3.where(5 = 'NH').1", "PID^1^3^^"),
    ],
)
def test_hl7_locations_fill_err_2_with_sequence_repetition_and_component(
    expression: str, where: str
) -> None:
    error = InvalidContent("wrong", expression=expression)
    ack = build_ack(incoming(), error)
    err = next(line for line in ack.split(b"\r") if line.startswith(b"ERR"))
    assert err.split(b"|")[2].decode() == where
    assert error_location(expression)[0] == expression[:3]


# ----------------------------------------------------------------------------- other readers


@pytest.mark.parametrize("version", ["2.4", "2.5.1"])
def test_other_libraries_read_the_ack(version: str) -> None:
    error = InvalidContent("bad | value", expression="PID.3")
    raw = build_ack(incoming(version), error).decode()
    python_hl7 = hl7.parse(raw)
    assert str(python_hl7.segment("MSA")[1]) == "AE"
    assert str(python_hl7.segment("MSA")[2]) == "GP0001"
    assert python_hl7.extract_field("MSH", 1, 12) == version
    hl7apy = parse_message(raw, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)
    assert hl7apy.msa.msa_1.to_er7() == "AE"
    assert hl7apy.msa.msa_2.to_er7() == "GP0001"
    assert hl7apy.msh.msh_9.to_er7() == "ACK^I12^ACK"
