"""Keeping every inbound message raw, with its status and diagnostics."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table, bindparam, insert, select

from gateway.store.database import Database
from gateway.store.models import Message
from gateway.store.refused_numbers import keep_numbers

#: A body over the size limit is kept only up to this many bytes.
KEPT_PREFIX = 64 * 1024


@dataclass
class InboundMessage:
    """An inbound message as received, before it is stored."""

    channel: str
    source: str
    body: bytes
    content_type: str | None
    request_id: str | None = None
    correlation_id: str | None = None
    source_message_id: str | None = None
    truncated: bool = False
    success_status: int = 200
    control_id: str | None = None
    dedup_key: str | None = None
    response: bytes | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def sha256(self) -> str:
        """The SHA-256 of the body as received."""
        return hashlib.sha256(self.body).hexdigest()


def message_values(message: InboundMessage, *, status: str, http_status: int) -> dict[str, Any]:
    """The column values of one messages row (without its referral and version)."""
    return {
        "received_at": message.received_at,
        "channel": message.channel,
        "source": message.source,
        "content_type": (message.content_type or "")[:200] or None,
        "body": message.body[:KEPT_PREFIX] if message.truncated else message.body,
        "body_truncated": message.truncated,
        "body_sha256": message.sha256,
        "request_id": (message.request_id or "")[:200] or None,
        "correlation_id": (message.correlation_id or "")[:200] or None,
        "source_message_id": (message.source_message_id or "")[:200] or None,
        "status": status,
        "http_status": http_status,
        "control_id": (message.control_id or "")[:200] or None,
        # Only an accepted message claims its control id; a rejected one may be corrected.
        "dedup_key": message.dedup_key if status == "accepted" else None,
        "response": message.response,
    }


def store_rejected(
    db: Database,
    message: InboundMessage,
    http_status: int,
    problem: dict[str, Any],
    status: str = "rejected",
) -> int:
    """Keep a message the gateway refused (or failed on), with what was wrong; returns its id."""
    row = message_values(message, status=status, http_status=http_status)
    row["diagnostics"] = orjson.dumps([problem]).decode()
    with db.writing() as conn:
        message_id = int(
            conn.execute(insert(Message).values(**row).returning(_MESSAGES.c.id)).scalar_one()
        )
        keep_numbers(conn, message_id, message.body)
        return message_id


def answer_given(db: Database, message: InboundMessage) -> bytes | None:
    """The answer already kept for this exact message (same source, control id and bytes)."""
    query = _GIVEN_NO_ID if message.control_id is None else _GIVEN
    params = {"source": message.source, "sha": message.sha256, "cid": message.control_id}
    with db.snapshot() as conn:
        response: bytes | None = conn.execute(query, params).scalar()
    return response


_MESSAGES = cast(Table, Message.__table__)
_GIVEN_BASE = (
    select(_MESSAGES.c.response)
    .where(
        _MESSAGES.c.source == bindparam("source"),
        _MESSAGES.c.body_sha256 == bindparam("sha"),
        _MESSAGES.c.response.is_not(None),
        _MESSAGES.c.status != "failed",
    )
    .order_by(_MESSAGES.c.id.desc())
    .limit(1)
)
# Built once: building a statement per message cost more than running it.
_GIVEN = _GIVEN_BASE.where(_MESSAGES.c.control_id == bindparam("cid"))
_GIVEN_NO_ID = _GIVEN_BASE.where(_MESSAGES.c.control_id.is_(None))
