"""How every refusal is answered, decided in one place for FHIR and for HL7 v2.

An error's class says what is wrong with a message; ``decide`` turns it into the answer: the
HTTP status, the FHIR IssueType, the BaRS http-error code (``issue.details.coding``), the
HL7 v2 acknowledgement code and the HL7 table 0357 error code for ERR.

Following BaRS: 400 (REC_BAD_REQUEST) when the message is malformed or its data invalid or
missing (structure, invariant, invalid, required, value); 422 (REC_UNPROCESSABLE_ENTITY) when
it is well formed but cannot be processed here (a kind of message not handled, a code this
receiver cannot map). In HL7 v2 terms: AE when the message itself is wrong, so that a resend
unchanged cannot succeed (content, size); AR when it was not taken up (not an HL7 v2
message, a type or media type not handled, a fault the sender may retry).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    install_decider,
)

#: The BaRS code system for ``OperationOutcome.issue.details.coding`` (spelt as BaRS does).
HTTP_ERROR_CODES = "https://fhir.nhs.uk/Codesystem/http-error-codes"


@dataclass(frozen=True, slots=True)
class Refusal:
    """How one kind of error is answered over each channel."""

    status: int  # HTTP status
    issue_code: str  # FHIR IssueType (OperationOutcome.issue.code)
    http_error: str  # BaRS http-error code (OperationOutcome.issue.details.coding.code)
    ack: str  # HL7 v2 MSA-1: AE or AR
    v2_error: str  # HL7 table 0357 code (ERR-3, or ERR-1.4 before v2.5)


_FAULT = Refusal(500, "exception", "REC_SERVER_ERROR", "AR", "207")

# Looked up along the error's class hierarchy, most specific first.
_BY_CLASS: dict[type[GatewayError], Refusal] = {
    NotAnHl7Message: Refusal(400, "structure", "REC_BAD_REQUEST", "AR", "100"),
    OverLimit: Refusal(400, "too-long", "REC_BAD_REQUEST", "AE", "102"),
    BrokenInvariant: Refusal(400, "invariant", "REC_BAD_REQUEST", "AE", "102"),
    InvalidMessage: Refusal(400, "structure", "REC_BAD_REQUEST", "AE", "102"),
    RequiredMissing: Refusal(400, "required", "REC_BAD_REQUEST", "AE", "101"),
    UnknownCode: Refusal(422, "code-invalid", "REC_UNPROCESSABLE_ENTITY", "AE", "103"),
    InvalidContent: Refusal(400, "invalid", "REC_BAD_REQUEST", "AE", "102"),
    NotSupported: Refusal(422, "not-supported", "REC_UNPROCESSABLE_ENTITY", "AR", "200"),
    # HTTP keeps 413 and 415; BaRS publishes no code for them, so the nearest is given.
    PayloadTooLarge: Refusal(413, "too-costly", "REC_UNPROCESSABLE_ENTITY", "AE", "102"),
    UnsupportedMediaType: Refusal(415, "not-supported", "REC_BAD_REQUEST", "AR", "200"),
    Unauthenticated: Refusal(401, "login", "REC_UNAUTHORIZED", "AR", "207"),
    Forbidden: Refusal(403, "forbidden", "REC_FORBIDDEN", "AR", "207"),
    NotFound: Refusal(404, "not-found", "REC_NOT_FOUND", "AE", "204"),
    Conflict: Refusal(409, "conflict", "REC_CONFLICT", "AE", "205"),
    StoreUnavailable: Refusal(503, "transient", "REC_SERVICE_UNAVAILABLE", "AR", "207"),
}

# For answers not raised as a GatewayError (an unknown route, a wrong method): by status.
_BY_STATUS: dict[int, Refusal] = {
    400: _BY_CLASS[InvalidMessage],
    401: _BY_CLASS[Unauthenticated],
    403: _BY_CLASS[Forbidden],
    404: _BY_CLASS[NotFound],
    405: Refusal(405, "not-supported", "REC_METHOD_NOT_ALLOWED", "AR", "200"),
    406: Refusal(406, "processing", "REC_NOT_ACCEPTABLE", "AR", "200"),
    409: _BY_CLASS[Conflict],
    413: _BY_CLASS[PayloadTooLarge],
    415: _BY_CLASS[UnsupportedMediaType],
    422: _BY_CLASS[NotSupported],
    429: Refusal(429, "throttled", "REC_TOO_MANY_REQUESTS", "AR", "207"),
    501: Refusal(501, "not-supported", "REC_NOT_IMPLEMENTED", "AR", "200"),
    503: _BY_CLASS[StoreUnavailable],
}


def decide(error: GatewayError) -> Refusal:
    """The answer to ``error``: HTTP status, FHIR issue code, BaRS code, ACK and ERR codes."""
    for cls in type(error).__mro__:
        refusal = _BY_CLASS.get(cls)
        if refusal is not None:
            return refusal
    return _FAULT


def for_status(status: int) -> Refusal:
    """The answer for an HTTP error raised outside the gateway's errors (e.g. 404, 405)."""
    found = _BY_STATUS.get(status)
    if found is not None:
        return found
    return _BY_CLASS[InvalidMessage] if 400 <= status < 500 else _FAULT


def ack_code(error: GatewayError | None) -> str:
    """AA when there is no error, else the refusal's AE or AR."""
    return "AA" if error is None else decide(error).ack


install_decider(decide)
