"""The audit trail: append an event, query and export events. There is no update or delete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from gateway.store.database import Database
from gateway.store.models import AuditEvent

#: Who can act: an API key's kind, a console user, or the command line.
ACTOR_KINDS = ("source", "platform", "admin", "viewer", "cli", "console")


@dataclass(frozen=True)
class Actor:
    """Who did it and from where: a key's principal, a console user or an operator's shell."""

    kind: str
    name: str
    address: str | None = None


def record_event(
    db: Database,
    actor: Actor,
    action: str,
    target_kind: str,
    target_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one event (``read``, ``search``, ``reprocess``, ``replay``, ``key-create``...)."""
    if actor.kind not in ACTOR_KINDS:
        raise ValueError(f"actor kind must be one of {ACTOR_KINDS}")
    row = {
        "at": datetime.now(UTC),
        "actor_kind": actor.kind,
        "actor": actor.name,
        "action": action,
        "target_kind": target_kind,
        "target_id": target_id,
        "address": actor.address,
        "detail": json.dumps(detail, sort_keys=True, separators=(",", ":")) if detail else None,
    }
    with db.transaction() as session:
        session.execute(insert(AuditEvent), [row])


def _as_dict(row: AuditEvent) -> dict[str, Any]:
    """One event as the API and the export show it."""
    return {
        "id": row.id,
        "at": (row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)).astimezone(UTC).isoformat(),
        "actor_kind": row.actor_kind,
        "actor": row.actor,
        "action": row.action,
        "target_kind": row.target_kind,
        "target_id": row.target_id,
        "address": row.address,
        "detail": json.loads(row.detail) if row.detail else None,
    }


def events(
    db: Database,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    target_id: str | None = None,
    after_id: int = 0,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Events in order of id, filtered; ``after_id`` pages through a long answer."""
    query = select(AuditEvent).where(AuditEvent.id > after_id)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if target_id is not None:
        query = query.where(AuditEvent.target_id == target_id)
    with db.reading() as session:
        rows = session.scalars(query.order_by(AuditEvent.id).limit(limit))
        return [_as_dict(r) for r in rows]


def all_events(db: Database, page: int = 1000, **filters: Any) -> Iterator[dict[str, Any]]:
    """Every event matching ``filters``, read a page at a time (for exports)."""
    after = 0
    while True:
        found = events(db, after_id=after, limit=page, **filters)
        yield from found
        if len(found) < page:
            return
        after = found[-1]["id"]
