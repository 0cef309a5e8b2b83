"""OperationOutcome resources for errors and informational answers."""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError


def issue(severity: str, code: str, text: str, expression: str | None = None) -> dict[str, Any]:
    """One OperationOutcome issue."""
    out: dict[str, Any] = {"severity": severity, "code": code, "details": {"text": text}}
    if expression:
        out["expression"] = [expression]
    return out


def operation_outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    """An OperationOutcome with the given issues."""
    return {"resourceType": "OperationOutcome", "issue": issues}


def from_error(error: GatewayError) -> dict[str, Any]:
    """The OperationOutcome a sender receives for a domain error."""
    return operation_outcome(
        [issue(error.severity, error.issue_code, error.message, error.expression)]
    )


def from_diagnostics(diagnostics: list[dict[str, str]], summary: str) -> dict[str, Any]:
    """An informational OperationOutcome: a summary, then one warning per diagnostic."""
    issues = [issue("information", "informational", summary)]
    issues += [
        issue("warning", "informational", f"{d['code']}: {d['message']}", d["location"] or None)
        for d in diagnostics
    ]
    return operation_outcome(issues)
