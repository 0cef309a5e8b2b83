"""SQLAlchemy table definitions; Alembic migrations under gateway/migrations create them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TextClause,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

HAS_CONTROL_ID = text("control_id IS NOT NULL")
HAS_DEDUP = text("dedup_key IS NOT NULL")
NOT_ACCEPTED = text("status <> 'accepted'")
#: The unique constraint that makes a referral's identity: source, identifier value and system.
IDENTITY = "uq_referrals_identity"


def _where(clause: TextClause) -> dict[str, Any]:
    """A partial index's condition, for both SQLite and PostgreSQL."""
    return {"sqlite_where": clause, "postgresql_where": clause}


class Base(DeclarativeBase):
    """Declarative base for the gateway's tables."""


class Message(Base):
    """Every inbound message, kept raw with its status (accepted, rejected, failed)."""

    __tablename__ = "messages"
    # Every index is a page written on every commit, so each is lean (migration 0005):
    # partial where most rows would not be found by it.
    __table_args__ = (
        Index("ix_messages_source_body", "source", "body_sha256"),
        Index("ix_messages_source_control", "source", "control_id", **_where(HAS_CONTROL_ID)),
        # One accepted message per sender's control id (HL7 v2 MSH-3, MSH-4, MSH-10).
        Index("uq_messages_source_dedup", "source", "dedup_key", unique=True, **_where(HAS_DEDUP)),
        # What operators look for: messages that were refused or failed.
        Index("ix_messages_not_accepted", "status", **_where(NOT_ACCEPTED)),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    channel: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(100))
    content_type: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    body_truncated: Mapped[bool] = mapped_column(default=False)
    body_sha256: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(200))
    correlation_id: Mapped[str | None] = mapped_column(String(200))
    source_message_id: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    http_status: Mapped[int] = mapped_column(Integer)
    diagnostics: Mapped[str | None] = mapped_column(Text)
    referral_id: Mapped[str | None] = mapped_column(ForeignKey("referrals.id"))
    record_version: Mapped[int | None] = mapped_column(Integer)
    control_id: Mapped[str | None] = mapped_column(String(200))
    dedup_key: Mapped[str | None] = mapped_column(String(600))
    response: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The stored message this one ran again (a reprocess, migration 0010).
    reprocessed_from: Mapped[int | None] = mapped_column(BigId)


class Referral(Base):
    """One referral per source and referral identifier (system and value); it has versions."""

    __tablename__ = "referrals"
    # The same value under two identifier systems is two referrals, never one (migration 0006).
    __table_args__ = (
        UniqueConstraint(
            "source", "referral_identifier", "referral_identifier_system", name=IDENTITY
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    referral_identifier: Mapped[str] = mapped_column(String(200))
    #: The identifier's system (FHIR Identifier.system, HL7 v2 assigning authority); "" if none.
    referral_identifier_system: Mapped[str] = mapped_column(
        String(500), default="", server_default=""
    )
    current_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(30))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Where the link-worker platform has the referral (the Task status machine).
    workflow_status: Mapped[str] = mapped_column(String(30), default="requested")
    #: The referrer cancelled; the platform is to confirm (or still send its outcome).
    cancellation_requested: Mapped[bool] = mapped_column(default=False)
    #: The link-worker platform (hub) the referral is routed to; "*" every platform (no
    #: routing file); None held for an operator (migration 0008).
    hub: Mapped[str | None] = mapped_column(String(100))
    #: Why the referral is held and released to no platform (consent refused, no route).
    held_reason: Mapped[str | None] = mapped_column(String(500))


class RecordVersion(Base):
    """One version of a referral's record; ``seq`` is the feed cursor (commit order)."""

    __tablename__ = "record_versions"
    __table_args__ = (
        UniqueConstraint("referral_id", "version"),
        # Each platform's feed: its versions in commit order (migration 0008).
        Index("ix_record_versions_hub_seq", "hub", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Found by the unique (referral_id, version), which also serves the foreign key.
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id"))
    version: Mapped[int] = mapped_column(Integer)
    content_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(30))
    record: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    #: The hub this version was released to ("*" every platform, None held).
    hub: Mapped[str | None] = mapped_column(String(100))


class ApiKey(Base):
    """An API key, stored as its SHA-256; a key belongs to one source or one platform."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    principal: Mapped[str] = mapped_column(String(100))
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Outcome(Base):
    """An outcome a platform posted for a referral; (referral, outcome_id) makes resends safe."""

    __tablename__ = "outcomes"
    __table_args__ = (UniqueConstraint("referral_id", "outcome_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id"), index=True)
    outcome_id: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(30))
    body: Mapped[str] = mapped_column(Text)
    body_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutboxItem(Base):
    """One delivery to make after commit: a write-back, a webhook, an HL7 v2 return message."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_order", "referral_id", "destination", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id"))
    destination: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PullWatermark(Base):
    """How far the poller has read a pulled source: the newest meta.lastUpdated it took."""

    __tablename__ = "pull_watermarks"

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: The server's clock, not ours (UTC): the next poll asks for _lastUpdated=gt(this - overlap).
    watermark: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    """One read of a record or one operator action: who, when, what, from where.

    Appended only (the application has no update or delete of it) and not tied to referrals
    by a foreign key, so it outlives a purge of the records it names.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_at", "at"),
        Index("ix_audit_target", "target_kind", "target_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor_kind: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(60))
    target_kind: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[str | None] = mapped_column(Text)


class EvidenceReferral(Base):
    """One referral's facts for the commissioners' measures, kept up by the evidence refresh
    (gateway/store/evidence.py) from record versions and outcomes (migration 0009)."""

    __tablename__ = "evidence_referrals"

    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id"), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    #: The calendar month of receipt (UTC), ``2026-11``.
    month: Mapped[str] = mapped_column(String(7))
    source: Mapped[str] = mapped_column(String(100))
    practice: Mapped[str | None] = mapped_column(String(20))
    #: A digest of the NHS number (the referral's id when it has none): links one person's
    #: scores across referrals; never exported.
    person: Mapped[str] = mapped_column(String(32))
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    declined: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    first_contact: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Days from receipt to the first contact (negative when the contact predates receipt).
    contact_days: Mapped[float | None] = mapped_column(Float)


class EvidenceScore(Base):
    """One wellbeing score from an outcome. ``ordinal`` orders a person's scores: the date,
    then the outcome's row and the score's place in it (``gateway.store.evidence.ordinal``)."""

    __tablename__ = "evidence_scores"

    ordinal: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id"), index=True)
    instrument: Mapped[str] = mapped_column(String(100))
    taken: Mapped[date] = mapped_column(Date)
    score: Mapped[float] = mapped_column(Float)


class EvidenceSeries(Base):
    """A referral's scores on one instrument, summed up: the first and last (by ordinal) and
    how many; the measures read these instead of sorting every score."""

    __tablename__ = "evidence_series"

    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id"), primary_key=True)
    instrument: Mapped[str] = mapped_column(String(100), primary_key=True)
    first_ordinal: Mapped[int] = mapped_column(BigInteger)
    last_ordinal: Mapped[int] = mapped_column(BigInteger)
    scores: Mapped[int] = mapped_column(Integer)


class EvidencePracticePcn(Base):
    """The practice to PCN table the measures group by (a copy of the routing file's)."""

    __tablename__ = "evidence_practice_pcns"

    practice: Mapped[str] = mapped_column(String(20), primary_key=True)
    pcn: Mapped[str] = mapped_column(String(20))


class EvidenceCursor(Base):
    """How far the evidence refresh has read: record_versions.seq, outcomes.id, and the
    digest of the PCN table copied."""

    __tablename__ = "evidence_cursors"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    digest: Mapped[str | None] = mapped_column(String(64))


# The operator console's search (migration 0010): newest first by source, by refused status,
# by the sender's message id; reprocess attempts; referrals by identifier and held ones.
Index("ix_messages_source_received", Message.source, Message.received_at)
Index("ix_messages_refused_received", Message.status, Message.received_at, **_where(NOT_ACCEPTED))
Index(
    "ix_messages_sender_id",
    Message.source_message_id,
    **_where(text("source_message_id IS NOT NULL")),
)
Index(
    "ix_messages_reprocessed_from",
    Message.reprocessed_from,
    **_where(text("reprocessed_from IS NOT NULL")),
)
Index("ix_referrals_identifier", Referral.referral_identifier)
Index("ix_referrals_held", Referral.held_reason, **_where(text("held_reason IS NOT NULL")))


class RefusedNhsNumber(Base):
    """A ten-digit number found in a refused message's raw body (migration 0011), so the
    console's NHS number search is an index look-up, not a scan of every refused body."""

    __tablename__ = "refused_nhs_numbers"
    __table_args__ = (Index("ix_refused_nhs_numbers_number", "nhs_number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    nhs_number: Mapped[str] = mapped_column(String(10))
