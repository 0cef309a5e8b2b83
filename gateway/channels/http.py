"""Helpers shared by the HTTP channels: bounded body reading, JSON answers, query numbers,
the audit trail's actor."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, current_app, request

from gateway.errors import InvalidMessage, PayloadTooLarge
from gateway.intake.pipeline import KEPT_PREFIX
from gateway.store.audit import Actor
from gateway.store.keys import Principal

FHIR_JSON = "application/fhir+json"


def read_body() -> tuple[bytes, bool]:
    """The request body, read up to the configured limit: (bytes, over_limit).

    Over the limit, only the first KEPT_PREFIX bytes are returned (to keep as evidence).
    """
    limit = int(current_app.config["MAX_BODY_BYTES"])
    declared = request.content_length
    if declared is not None and declared > limit:
        return request.stream.read(KEPT_PREFIX), True
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        if len(body) < KEPT_PREFIX:  # a small limit: still keep the promised prefix
            body += request.stream.read(KEPT_PREFIX - len(body))
        return body[:KEPT_PREFIX], True
    return body, False


def too_large() -> PayloadTooLarge:
    """The error for a body over the limit."""
    limit = int(current_app.config["MAX_BODY_BYTES"])
    return PayloadTooLarge(f"the body is over the {limit}-byte limit")


def json_response(body: object, status: int = 200) -> Response:
    """A plain JSON response (records, outcomes, operator endpoints)."""
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def fhir_response(
    resource: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A FHIR JSON response."""
    return Response(
        orjson.dumps(resource), status=status, mimetype=FHIR_JSON, headers=headers or {}
    )


def actor(principal: Principal) -> Actor:
    """The audit trail's actor for a key's principal, with the caller's address."""
    return Actor(principal.kind, principal.name, request.remote_addr)


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within bounds, else a 400 naming it."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise InvalidMessage(f"{name} must be a whole number from {low} to {high}", expression=name)
    return int(raw)
