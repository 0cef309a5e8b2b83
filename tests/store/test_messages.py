"""Keeping inbound messages raw: truncation, hashes and clipped metadata on every store."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select

from gateway.store.database import Database
from gateway.store.messages import KEPT_PREFIX, InboundMessage, store_rejected
from gateway.store.migrate import upgrade
from gateway.store.models import Message

PROBLEM = {"code": "structure", "location": "", "message": "Malformed JSON"}


def test_rejected_messages_keep_bytes_and_clip_metadata(db_url: str) -> None:
    db = Database(db_url)
    upgrade(db)
    raw = bytes(range(256)) * 4  # any bytes at all, NUL and invalid UTF-8 included
    big = b"{" * (KEPT_PREFIX + 10)
    long_id = "r" * 300  # the columns hold 200 characters; PostgreSQL enforces it
    plain = InboundMessage("fhir-message", "uk-core", raw, "application/fhir+json")
    clipped = InboundMessage(
        "fhir-message",
        "uk-core",
        big,
        "application/fhir+json; " + "x" * 300,
        request_id=long_id,
        correlation_id=long_id,
        source_message_id=long_id,
        truncated=True,
    )
    first = store_rejected(db, plain, 400, PROBLEM)
    second = store_rejected(db, clipped, 413, PROBLEM, status="failed")
    assert second > first
    with db.transaction() as session:
        rows = {row.id: row for row in session.scalars(select(Message))}
    kept = rows[first]
    assert (kept.body, kept.body_truncated, kept.status) == (raw, False, "rejected")
    assert kept.body_sha256 == hashlib.sha256(raw).hexdigest()
    assert json.loads(kept.diagnostics or "") == [PROBLEM]
    assert kept.request_id is None and kept.referral_id is None
    cut = rows[second]
    assert (cut.body, cut.body_truncated, cut.status) == (big[:KEPT_PREFIX], True, "failed")
    assert cut.http_status == 413
    assert len(cut.content_type or "") == 200
    assert cut.request_id == cut.correlation_id == cut.source_message_id == long_id[:200]
    db.dispose()
