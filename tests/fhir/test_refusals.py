"""Every refusal decided in one place: HTTP status, FHIR issue, BaRS code, HL7 v2 ACK."""

from __future__ import annotations

import pytest
from support import fhir_valid

from gateway.errors import (
    BrokenInvariant,
    Conflict,
    Forbidden,
    GatewayError,
    InvalidContent,
    InvalidMessage,
    NotAnHl7Message,
    NotFound,
    NotSupported,
    OverLimit,
    PayloadTooLarge,
    RequiredMissing,
    StoreUnavailable,
    Unauthenticated,
    UnknownCode,
    UnsupportedMediaType,
)
from gateway.fhir.outcome import from_error, from_http_status
from gateway.hl7v2.ack import ack_code as v2_ack_code
from gateway.intake.pipeline import InternalFault
from gateway.refusals import HTTP_ERROR_CODES, decide, for_status

# (error, HTTP status, FHIR issue code, BaRS http-error code, ACK code)
TABLE: list[tuple[GatewayError, int, str, str, str]] = [
    (InvalidMessage("bad JSON"), 400, "structure", "REC_BAD_REQUEST", "AE"),
    (BrokenInvariant("ext-1"), 400, "invariant", "REC_BAD_REQUEST", "AE"),
    (InvalidContent("check digit"), 400, "invalid", "REC_BAD_REQUEST", "AE"),
    (RequiredMissing("no birth date"), 400, "required", "REC_BAD_REQUEST", "AE"),
    (UnknownCode("code 'X'"), 422, "code-invalid", "REC_UNPROCESSABLE_ENTITY", "AE"),
    (NotSupported("a booking"), 422, "not-supported", "REC_UNPROCESSABLE_ENTITY", "AR"),
    (PayloadTooLarge("too big"), 413, "too-costly", "REC_UNPROCESSABLE_ENTITY", "AE"),
    (UnsupportedMediaType("text/plain"), 415, "not-supported", "REC_BAD_REQUEST", "AR"),
    (Unauthenticated("no key"), 401, "login", "REC_UNAUTHORIZED", "AR"),
    (Forbidden("other source"), 403, "forbidden", "REC_FORBIDDEN", "AR"),
    (NotFound("no such referral"), 404, "not-found", "REC_NOT_FOUND", "AE"),
    (Conflict("another patient"), 409, "conflict", "REC_CONFLICT", "AE"),
    (StoreUnavailable("retry"), 503, "transient", "REC_SERVICE_UNAVAILABLE", "AR"),
    (InternalFault("kept"), 500, "exception", "REC_SERVER_ERROR", "AR"),
    (GatewayError("anything"), 500, "exception", "REC_SERVER_ERROR", "AR"),
    (NotAnHl7Message("no MSH"), 400, "structure", "REC_BAD_REQUEST", "AR"),
    (
        OverLimit("too many repetitions", expression="PID.3", header=None),
        400,
        "too-long",
        "REC_BAD_REQUEST",
        "AE",
    ),
]


@pytest.mark.parametrize(
    ("error", "status", "code", "bars", "ack"), TABLE, ids=lambda v: type(v).__name__
)
def test_one_decision_per_error(
    error: GatewayError, status: int, code: str, bars: str, ack: str
) -> None:
    refusal = decide(error)
    assert (refusal.status, refusal.issue_code, refusal.http_error, refusal.ack) == (
        status,
        code,
        bars,
        ack,
    )
    # What the rest of the gateway reads is the same decision.
    assert (error.status, error.issue_code) == (status, code)
    assert v2_ack_code(error) == ack


@pytest.mark.parametrize(("error", "status", "code", "bars", "ack"), TABLE[:3])
def test_operation_outcome_has_the_bars_error_shape(
    error: GatewayError, status: int, code: str, bars: str, ack: str
) -> None:
    error.expression = "Bundle.entry[1].resource.identifier[0].value"
    outcome = from_error(error)
    fhir_valid(outcome)
    [issue] = outcome["issue"]
    assert issue == {
        "severity": "error",
        "code": code,
        "details": {
            "coding": [{"system": HTTP_ERROR_CODES, "code": bars}],
            "text": error.message,
        },
        "expression": ["Bundle.entry[1].resource.identifier[0].value"],
    }


def test_bars_spells_its_code_system_with_a_lower_case_s() -> None:
    assert HTTP_ERROR_CODES == "https://fhir.nhs.uk/Codesystem/http-error-codes"


def test_no_error_is_an_application_accept() -> None:
    assert v2_ack_code(None) == "AA"


@pytest.mark.parametrize(
    ("status", "code", "bars"),
    [
        (404, "not-found", "REC_NOT_FOUND"),
        (405, "not-supported", "REC_METHOD_NOT_ALLOWED"),
        (406, "processing", "REC_NOT_ACCEPTABLE"),
        (418, "structure", "REC_BAD_REQUEST"),
        (500, "exception", "REC_SERVER_ERROR"),
    ],
)
def test_http_errors_outside_the_gateway_errors(status: int, code: str, bars: str) -> None:
    refusal = for_status(status)
    assert (refusal.issue_code, refusal.http_error) == (code, bars)
    outcome = from_http_status(status, "route not found")
    fhir_valid(outcome)
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == bars
