"""Request authentication: an API key per source system or link-worker platform."""

from __future__ import annotations

from flask import request

from gateway.errors import Forbidden, Unauthenticated
from gateway.services import current_services
from gateway.store.keys import Principal

SOURCE_HEADER = "X-Source-System"


def presented_key() -> str | None:
    """The key from ``Authorization: Bearer`` or ``X-API-Key``."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("X-API-Key") or None


def authenticate(kind: str) -> Principal:
    """The caller's principal, which must be of ``kind``: 401 without a known key, else 403."""
    key = presented_key()
    if key is None:
        raise Unauthenticated("an API key is required (Authorization: Bearer <key>)")
    principal = current_services().keys.lookup(key)
    if principal is None:
        raise Unauthenticated("the API key is not recognised or has been revoked")
    if principal.kind != kind:
        raise Forbidden(f"a {principal.kind} key cannot be used here; a {kind} key is needed")
    return principal


def authenticate_source() -> str:
    """The source system a request may send as; naming another source is forbidden."""
    principal = authenticate("source")
    named = request.headers.get(SOURCE_HEADER)
    if named and named != principal.name:
        raise Forbidden(
            f"this key belongs to source {principal.name}, not {named}",
            expression=SOURCE_HEADER,
        )
    return principal.name
