"""API keys: created once and shown once, stored as SHA-256, looked up per request."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from gateway.store.database import Database
from gateway.store.models import ApiKey

KINDS = ("source", "platform", "admin", "viewer", "commissioner")
_CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class Principal:
    """Who a key belongs to: a source system (sends referrals) or a platform (reads records)."""

    kind: str
    name: str


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(db: Database, kind: str, principal: str, label: str | None = None) -> str:
    """Create a key for a source or platform and return it (it is not stored in clear)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    key = f"spg_{kind[0]}_{secrets.token_urlsafe(32)}"
    with db.transaction() as session:
        session.add(
            ApiKey(
                key_sha256=_digest(key),
                kind=kind,
                principal=principal,
                label=label,
                created_at=datetime.now(UTC),
            )
        )
    return key


def revoke_keys(
    db: Database, kind: str | None = None, principal: str | None = None, key_id: int | None = None
) -> int:
    """Revoke live keys: one by id, or every key of one principal; returns how many."""
    count = 0
    query = select(ApiKey).where(ApiKey.revoked_at.is_(None))
    if key_id is not None:
        query = query.where(ApiKey.id == key_id)
    else:
        query = query.where(ApiKey.kind == kind, ApiKey.principal == principal)
    with db.transaction() as session:
        for row in session.scalars(query):
            row.revoked_at = datetime.now(UTC)
            count += 1
    return count


def list_keys(db: Database) -> list[dict[str, str | None]]:
    """Every key's id, owner, label and dates (never the key)."""
    with db.reading() as session:
        return [
            {
                "id": str(k.id),
                "kind": k.kind,
                "principal": k.principal,
                "label": k.label,
                "created_at": k.created_at.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in session.scalars(select(ApiKey).order_by(ApiKey.id))
        ]


class KeyRing:
    """Looks keys up by digest, caching answers briefly; revocation takes effect within 30 s."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def lookup(self, key: str) -> Principal | None:
        """The principal a presented key belongs to, or None."""
        digest = _digest(key)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit and now - hit[0] < _CACHE_SECONDS:
            return hit[1]
        with self.db.reading() as session:
            row = session.scalars(
                select(ApiKey).where(ApiKey.key_sha256 == digest, ApiKey.revoked_at.is_(None))
            ).first()
            found = Principal(row.kind, row.principal) if row else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, found)
        return found
