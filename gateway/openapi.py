"""The OpenAPI 3.1 document of the non-FHIR API, built from the marshmallow schemas.

The FHIR endpoints are described by the CapabilityStatement at ``/fhir/metadata``; this
document covers what platforms and operators call: records, the feed, outcomes, the outbox
and health. Served at ``/openapi.json``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from gateway import __version__
from gateway.api_schemas import (
    DeadLetters,
    EvidenceMeasures,
    Feed,
    Health,
    OperationOutcome,
    OutcomeFeed,
    OutcomeList,
    OutcomeTaken,
    RecordEnvelope,
    ReferralTaken,
    Replayed,
)
from gateway.openapi_rules import add_rules
from gateway.record.outcome import OutcomeRecord

#: The media type of every error answer (gateway.channels.http.fhir_response).
_FHIR_JSON = "application/fhir+json"

_ERRORS = {
    "400": "The request is malformed; the OperationOutcome names the element",
    "401": "No API key, or one not recognised",
    "403": "The key may not do this",
    "404": "No such item",
    "409": "The request conflicts with what is held",
    "413": "The body is larger than the gateway accepts",
    "422": "The body is well formed but breaks a rule",
    "503": "The store is unavailable; try again",
}


def _answers(ok: dict[str, tuple[str, str]], errors: tuple[str, ...]) -> dict[str, Any]:
    """Responses: the success codes with their schema, then the errors as OperationOutcomes."""
    out: dict[str, Any] = {
        code: {"description": words, "content": {"application/json": {"schema": schema}}}
        for code, (words, schema) in ok.items()
    }
    for code in errors:
        out[code] = {"description": _ERRORS[code], "content": error_content()}
    return out


def error_content() -> dict[str, Any]:
    """An error's body: an OperationOutcome, sent as application/fhir+json (application/json
    listed too, for clients that look only there)."""
    return {media: {"schema": "OperationOutcome"} for media in (_FHIR_JSON, "application/json")}


def _query(name: str, words: str, minimum: int, maximum: int | None = None) -> dict[str, Any]:
    """A whole-number query parameter."""
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return {"name": name, "in": "query", "required": False, "description": words, "schema": schema}


def _path(name: str, words: str, kind: str = "string") -> dict[str, Any]:
    """A path parameter."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": words,
        "schema": {"type": kind},
    }


def schema_name(schema: Any) -> str:
    """A component's name: the class name, with ``Outcome`` before the outcome record's parts
    (its Contact and Assessment differ from the referral record's)."""
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__
    if cls.__module__ == "gateway.record.outcome" and not name.startswith("Outcome"):
        return f"Outcome{name}"
    return name


@cache
def _cursor_feed(
    summary: str, per_page: str, page: tuple[str, str], max_page: int
) -> dict[str, Any]:
    """A GET of pages after a cursor (``since``, ``limit``) for a platform key."""
    return {
        "get": {
            "summary": summary,
            "security": [{"apiKey": []}],
            "parameters": [
                _query("since", "The cursor from the last page (0 from the start)", 0, 2**62),
                _query("limit", per_page, 1, max_page),
            ],
            "responses": _answers({"200": page}, ("400", "401", "403", "503")),
        }
    }


def document(max_page: int = 500) -> dict[str, Any]:
    """The OpenAPI document (built once per page size)."""
    spec = APISpec(
        title="Social prescribing gateway API",
        version=__version__,
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin(schema_name_resolver=schema_name)],
        info={"description": "Records, feed, outcomes and outbox, for platforms and operators."},
    )
    spec.components.security_scheme("apiKey", {"type": "http", "scheme": "bearer"})
    for name, schema in (
        ("OperationOutcome", OperationOutcome),
        ("RecordEnvelope", RecordEnvelope),
        ("Feed", Feed),
        ("OutcomeRecord", OutcomeRecord),
        ("OutcomeTaken", OutcomeTaken),
        ("OutcomeList", OutcomeList),
        ("OutcomeFeed", OutcomeFeed),
        ("DeadLetters", DeadLetters),
        ("Replayed", Replayed),
        ("Health", Health),
        ("ReferralTaken", ReferralTaken),
        ("EvidenceMeasures", EvidenceMeasures),
    ):
        spec.components.schema(name, schema=schema)
    key: list[dict[str, list[str]]] = [{"apiKey": []}]
    spec.path(
        "/records/{record_id}",
        parameters=[_path("record_id", "The record's id")],
        operations={
            "get": {
                "summary": "One record, the current version or ?version=N (platform key)",
                "security": key,
                "parameters": [_query("version", "A version of the record", 1, 1_000_000)],
                "responses": _answers(
                    {"200": ("The record", "RecordEnvelope")}, ("400", "401", "403", "404", "503")
                ),
            }
        },
    )
    spec.path(
        "/records",
        operations=_cursor_feed(
            "Record versions after a cursor, in commit order (platform key)",
            "Versions per page",
            ("A page of the feed", "Feed"),
            max_page,
        ),
    )
    spec.path(
        "/referrals/{referral_id}/outcomes",
        parameters=[_path("referral_id", "The referral's id (the record's id)")],
        operations={
            "post": {
                "summary": "Post an outcome: status, contacts, scores, activities (platform key)",
                "security": key,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": "OutcomeRecord"}},
                },
                "responses": _answers(
                    {
                        "201": ("Stored", "OutcomeTaken"),
                        "200": ("Already held (a resend)", "OutcomeTaken"),
                    },
                    ("400", "401", "403", "404", "409", "413", "422", "503"),
                ),
            },
            "get": {
                "summary": "Every outcome stored for the referral, oldest first (platform key)",
                "security": key,
                "responses": _answers(
                    {"200": ("The outcomes", "OutcomeList")}, ("401", "403", "404", "503")
                ),
            },
        },
    )
    spec.path(
        "/outcomes",
        operations=_cursor_feed(
            "Outcomes after a cursor for referrals routed to you (platform key)",
            "Outcomes per page",
            ("A page of outcomes", "OutcomeFeed"),
            max_page,
        ),
    )
    spec.path(
        "/evidence/measures",
        operations={
            "get": {
                "summary": "Measures for commissioners, small counts suppressed (admin or"
                " commissioner key); the export is GET /evidence/export (docs/evidence.md)",
                "security": key,
                "parameters": [
                    {"name": n, "in": "query", "description": w, "schema": {"type": "string"}}
                    for n, w in (
                        ("from", "First day received, YYYY-MM-DD (included)"),
                        ("to", "Last day received, YYYY-MM-DD (included)"),
                        ("by", "period, source, practice, pcn or hub (default period)"),
                    )
                ],
                "responses": _answers(
                    {"200": ("The measure table", "EvidenceMeasures")},
                    ("400", "401", "403", "503"),
                ),
            }
        },
    )
    spec.path(
        "/outbox/dead",
        operations={
            "get": {
                "summary": "Outbox items given up on (admin key)",
                "security": key,
                "responses": _answers(
                    {"200": ("The dead letters", "DeadLetters")}, ("401", "403", "503")
                ),
            }
        },
    )
    spec.path(
        "/outbox/{item_id}/replay",
        parameters=[_path("item_id", "The outbox item's id", "integer")],
        operations={
            "post": {
                "summary": "Send a dead letter again (admin key)",
                "security": key,
                "responses": _answers(
                    {"200": ("Queued again", "Replayed")}, ("401", "403", "404", "503")
                ),
            }
        },
    )
    spec.path(
        "/community/referrals",
        operations={
            "post": {
                "summary": "A community partner's referral, one JSON object (community source key)",
                "security": key,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            # The shape of docs/community.md, from the file that checks it.
                            "schema": {
                                "x-json-schema-file": "mappings/community/referral.schema.json"
                            }
                        }
                    },
                },
                "responses": _answers(
                    {
                        "201": ("Stored", "ReferralTaken"),
                        "200": ("Already held (a resend, or the same content)", "ReferralTaken"),
                    },
                    ("400", "401", "403", "404", "409", "413", "422", "503"),
                ),
            }
        },
    )
    spec.path(
        "/healthz",
        operations={
            "get": {
                "summary": "Alive: the store answers and delivery is not stuck",
                "responses": {
                    "200": {
                        "description": "Healthy",
                        "content": {"application/json": {"schema": "Health"}},
                    },
                    "503": {
                        "description": "Unhealthy",
                        "content": {"application/json": {"schema": "Health"}},
                    },
                },
            }
        },
    )
    built: dict[str, Any] = spec.to_dict()
    return add_rules(built)
