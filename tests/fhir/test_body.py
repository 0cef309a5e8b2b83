"""Tests for gateway.fhir.body: content negotiation and safe decoding of request bodies."""

from __future__ import annotations

import pytest

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
