"""Tests for gateway.fhir.body: content negotiation and safe decoding of request bodies."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gateway import nhs_number
from gateway.errors import GatewayError, InvalidMessage, PayloadTooLarge, UnsupportedMediaType
from gateway.fhir.body import decode_body, media_type_of

PATIENT_JSON = b'{"resourceType": "Patient", "id": "p1", "active": true}'
PATIENT_XML = (
    b'<Patient xmlns="http://hl7.org/fhir"><id value="p1"/><active value="true"/></Patient>'
)
PATIENT = {"resourceType": "Patient", "id": "p1", "active": True}


@pytest.mark.parametrize(
    "content_type",
    [
        "application/fhir+json",
        "application/json",
        "application/fhir+json; charset=utf-8",
        "Application/FHIR+JSON;charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/fhir+json; fhirVersion=4.0",
    ],
)
def test_json_media_types(content_type: str) -> None:
    assert decode_body(PATIENT_JSON, content_type) == PATIENT


@pytest.mark.parametrize(
    "content_type",
    ["application/fhir+xml", "application/xml", "text/xml", "application/fhir+xml; charset=utf-8"],
)
def test_xml_media_types(content_type: str) -> None:
    assert decode_body(PATIENT_XML, content_type) == PATIENT


@pytest.mark.parametrize("content_type", [None, "", "  "])
def test_missing_content_type_sniffs(content_type: str | None) -> None:
    assert decode_body(b"  \n" + PATIENT_JSON, content_type) == PATIENT
    assert decode_body(b"\n\t" + PATIENT_XML, content_type) == PATIENT


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "json"],
)
def test_unsupported_content_type(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        decode_body(PATIENT_JSON, content_type)


@pytest.mark.parametrize("charset", ["iso-8859-1", "utf-16", "latin1", ""])
def test_charset_other_than_utf8_is_unsupported(charset: str) -> None:
    with pytest.raises(UnsupportedMediaType, match="UTF-8"):
        decode_body(PATIENT_JSON, f"application/fhir+json; charset={charset}")


def test_media_type_of() -> None:
    assert media_type_of(None) is None
    assert media_type_of("text/xml; charset=utf8") == "text/xml"


def test_payload_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        decode_body(PATIENT_JSON, "application/fhir+json", max_bytes=10)
    assert decode_body(PATIENT_JSON, "application/fhir+json", max_bytes=len(PATIENT_JSON))


def test_json_nested_10000_deep_is_invalid_not_recursion_error() -> None:
    raw = b'{"resourceType": "Patient", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    with pytest.raises(InvalidMessage, match="nested too deeply"):
        decode_body(raw, "application/fhir+json")


def test_json_objects_nested_10000_deep() -> None:
    raw = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    with pytest.raises(InvalidMessage):
        decode_body(raw, None)


def test_invalid_utf8_reports_byte_offset() -> None:
    raw = b'{"resourceType": "Patient", "name": "\xff"}'
    with pytest.raises(InvalidMessage) as info:
        decode_body(raw, "application/fhir+json")
    assert "not valid UTF-8" in info.value.message
    offset = raw.index(b"\xff")
    assert f"offset {offset}" in info.value.message


def test_malformed_json_reports_position() -> None:
    raw = b'{"resourceType": "Patient",\n "active": true,}'
    with pytest.raises(InvalidMessage) as info:
        decode_body(raw, "application/fhir+json")
    assert "Malformed JSON at line 2" in info.value.message
    assert "trailing comma" in info.value.message


@pytest.mark.parametrize(
    "raw",
    [b'[{"resourceType": "Patient"}]', b'"Patient"', b"42", b"null", b"true"],
    ids=["array", "string", "number", "null", "boolean"],
)
def test_top_level_must_be_an_object(raw: bytes) -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_body(raw, "application/json")
    assert info.value.expression == "resourceType"


@pytest.mark.parametrize(
    "raw",
    [b"{}", b'{"id": "x"}', b'{"resourceType": 7}', b'{"resourceType": ""}'],
    ids=["empty", "missing", "number", "empty-string"],
)
def test_resource_type_must_be_a_string(raw: bytes) -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_body(raw, "application/fhir+json")
    assert info.value.expression == "resourceType"


@pytest.mark.parametrize("raw", [b"", b"   ", b"\xef\xbb\xbf"])
def test_empty_body(raw: bytes) -> None:
    with pytest.raises(InvalidMessage):
        decode_body(raw, None)


def test_xml_errors_come_through_as_invalid_message() -> None:
    with pytest.raises(InvalidMessage, match="line"):
        decode_body(b'<Patient xmlns="http://hl7.org/fhir"><id value="x">', "application/fhir+xml")


def test_json_sent_as_xml_is_invalid() -> None:
    with pytest.raises(InvalidMessage):
        decode_body(PATIENT_JSON, "application/fhir+xml")


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"\x00\x01\x02", None),
        (b"\xfe\xff\x00<", None),
        (b"<", None),
        (b"<?xml version='1.0' encoding='bogus'?><Patient/>", "text/xml"),
        (b"{" * 100_000, "application/json"),
        (b"<a>" * 100_000, "text/xml"),
        (b'{"resourceType": "Patient", "x": "\\ud800"}', "application/json"),
        (b"1e999999", "application/json"),
        (b'{"resourceType": "Patient"} trailing', "application/json"),
    ],
)
def test_garbage_raises_only_gateway_errors(raw: bytes, content_type: str | None) -> None:
    with pytest.raises(GatewayError):
        decode_body(raw, content_type)


# ----------------------------------------------------------------------------- repeated keys

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
JSON = "application/fhir+json"


def refused_at(raw: bytes) -> str | None:
    """The expression of the refusal of ``raw``; the test fails if it is accepted."""
    with pytest.raises(InvalidMessage, match="more than once") as info:
        decode_body(raw, JSON)
    assert info.value.status == 400
    assert info.value.issue_code == "structure"
    return info.value.expression


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b'{"resourceType": "Patient", "id": "a", "id": "b"}', "Patient.id"),
        (b'{"resourceType":"Patient","resourceType":"Patient"}', "Patient.resourceType"),
        (
            b'{"resourceType": "Patient", "identifier": [{"value": "1"}, '
            b'{"system": "s", "value": "2", "system": "t"}]}',
            "Patient.identifier[1].system",
        ),
        (
            b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient"}}, '
            b'{"resource": {"resourceType": "Patient", "name": [{"given": ["A"], '
            b'"given": ["B"]}]}}]}',
            "Bundle.entry[1].resource.name[0].given",
        ),
        # Whitespace before the colon, and the same key differently escaped.
        (
            b'{"resourceType": "Patient", "gender" : "male", "gender"\n:\t"female"}',
            "Patient.gender",
        ),
        (
            b'{"resourceType": "Patient", "gender": "male", "g\\u0065nder": "female"}',
            "Patient.gender",
        ),
        # A repeat trying to hide behind an escaped colon elsewhere.
        (b'{"resourceType": "Patient", "id": "a\\u003a", "id": "b"}', "Patient.id"),
        (b'{"resourceType": "Patient", "id": "a\\u003A", "id": "b:"}', "Patient.id"),
        # A repeat whose dropped value is an object with keys of its own.
        (
            b'{"resourceType": "Patient", "maritalStatus": {"text": "x"}, "maritalStatus": {}}',
            "Patient.maritalStatus",
        ),
    ],
)
def test_a_repeated_key_is_refused_naming_it(raw: bytes, where: str) -> None:
    assert refused_at(raw) == where


@pytest.mark.parametrize(
    "raw",
    [
        b'{"resourceType": "Patient", "id": "a:b", "name": [{"text": "10:30 \\"quoted\\": yes"}]}',
        b'{"resourceType": "Patient", "id": "a\\u003ab"}',
        b'{"resourceType": "Patient", "id": "\\\\u003a"}',  # a backslash, then the text u003a
        b'{"resourceType": "Patient", "a:b": 1, "name": [{"given": ["x"]}, {"given": ["x"]}]}',
        b'{"resourceType" : "Patient" , "id" : "x"}',
    ],
)
def test_the_same_key_in_different_objects_or_colons_in_text_are_not_repeats(raw: bytes) -> None:
    assert decode_body(raw, JSON)["resourceType"] == "Patient"


@pytest.mark.parametrize(
    "path", sorted(FIXTURES.glob("*/*.json")), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_every_fixture_is_proved_free_of_repeats_without_the_slow_pass(path: Path) -> None:
    from gateway.fhir.body import _surely_unique_keys

    raw = path.read_bytes()
    value = orjson.loads(raw)
    assert _surely_unique_keys(raw, value, b"\\" in raw)


def test_a_repeated_key_in_a_complete_referral_names_the_patient_identifier() -> None:
    raw = (FIXTURES / "uk-core" / "01-new-referral.json").read_bytes()
    doc = orjson.loads(raw)
    position = next(
        i for i, e in enumerate(doc["entry"]) if e["resource"]["resourceType"] == "Patient"
    )
    patient = doc["entry"][position]["resource"]
    other = nhs_number.synthetic(202)
    patient["@@"] = [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": other}]
    body = orjson.dumps(doc, option=orjson.OPT_INDENT_2).replace(b'"@@"', b'"identifier"')
    assert orjson.loads(body)["entry"][position]["resource"]["identifier"][0]["value"] == other
    assert refused_at(body) == f"Bundle.entry[{position}].resource.identifier"
