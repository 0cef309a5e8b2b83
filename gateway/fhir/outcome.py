"""OperationOutcome resources for errors and informational answers, in the BaRS error shape.

A refusal's issue carries the FHIR IssueType, ``details.coding`` from the BaRS http-error
codes beside ``details.text``, and ``expression`` naming the element of the sender's message.
What each error is answered with is decided in ``gateway.refusals``.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError
from gateway.refusals import HTTP_ERROR_CODES, decide, for_status


def issue(
    severity: str,
    code: str,
    text: str,
    expression: str | None = None,
    http_error: str | None = None,
) -> dict[str, Any]:
    """One OperationOutcome issue; ``http_error`` is a BaRS http-error code, when refusing."""
    details: dict[str, Any] = {"text": text}
    if http_error:
        details = {"coding": [{"system": HTTP_ERROR_CODES, "code": http_error}], "text": text}
    out: dict[str, Any] = {"severity": severity, "code": code, "details": details}
    if expression:
        out["expression"] = [expression]
    return out


def operation_outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    """An OperationOutcome with the given issues."""
    return {"resourceType": "OperationOutcome", "issue": issues}


def from_error(error: GatewayError) -> dict[str, Any]:
    """The OperationOutcome a sender receives for a domain error."""
    refusal = decide(error)
    return operation_outcome(
        [
            issue(
                error.severity,
                refusal.issue_code,
                error.message,
                error.expression,
                refusal.http_error,
            )
        ]
    )


def from_http_status(status: int, text: str, severity: str = "error") -> dict[str, Any]:
    """The OperationOutcome for an HTTP error that is not a domain error (404 route, 405)."""
    refusal = for_status(status)
    return operation_outcome([issue(severity, refusal.issue_code, text, None, refusal.http_error)])


def from_diagnostics(diagnostics: list[dict[str, str]], summary: str) -> dict[str, Any]:
    """An informational OperationOutcome: a summary, then one warning per diagnostic."""
    issues = [issue("information", "informational", summary)]
    issues += [
        issue("warning", "informational", f"{d['code']}: {d['message']}", d["location"] or None)
        for d in diagnostics
    ]
    return operation_outcome(issues)
