"""The intake path's statements, run on the driver cursor (see gateway/store/direct.py).

Written out in SQL with ``:name`` parameters: finding a referral, a resend or a reused control
id, and inserting the referral (or moving it to its next version), the message and the record
version. Every other statement of the store is SQLAlchemy Core.
"""

from __future__ import annotations

from gateway.store.direct import Sql

FIND_REFERRAL = Sql(
    "SELECT id, current_version, hub, held_reason FROM referrals WHERE source = :source"
    " AND referral_identifier = :identifier AND referral_identifier_system = :system"
)
FIND_BY_KEY = Sql(
    "SELECT referral_id, record_version, body_sha256, response FROM messages"
    " WHERE source = :source AND dedup_key = :key"
)
FIND_RESEND = Sql(
    "SELECT record_version, response FROM messages WHERE source = :source"
    " AND body_sha256 = :sha AND referral_id = :referral_id AND status = 'accepted' LIMIT 1"
)
VERSION = Sql(
    "SELECT version, status, record, received_at, content_sha256 FROM record_versions"
    " WHERE referral_id = :referral_id AND version = :version"
)
NEW_REFERRAL = Sql(
    """INSERT INTO referrals (id, source, referral_identifier, referral_identifier_system,
    current_version, status, created_at, updated_at, workflow_status, cancellation_requested,
    hub, held_reason)
    VALUES (:id, :source, :referral_identifier, :system, 1, :status, :now, :now, 'requested',
    :cancel, :hub, :held)""",
    dates=("now",),
)
NEXT_VERSION = Sql(
    """UPDATE referrals SET current_version = :version, status = :status, updated_at = :now,
    cancellation_requested = :cancel, hub = :hub, held_reason = :held
    WHERE id = :id AND current_version = :seen""",
    dates=("now",),
)
NEW_MESSAGE = Sql(
    """INSERT INTO messages (received_at, channel, source, content_type, body, body_truncated,
    body_sha256, request_id, correlation_id, source_message_id, status, http_status,
    diagnostics, referral_id, record_version, control_id, dedup_key, response)
    VALUES (:received_at, :channel, :source, :content_type, :body, :body_truncated,
    :body_sha256, :request_id, :correlation_id, :source_message_id, :status, :http_status,
    :diagnostics, :referral_id, :record_version, :control_id, :dedup_key, :response)
    RETURNING id""",
    dates=("received_at",),
)
NEW_VERSION = Sql(
    """INSERT INTO record_versions (referral_id, version, content_sha256, status, record,
    received_at, message_id, hub) VALUES (:referral_id, :version, :content_sha256, :status,
    :record, :received_at, :message_id, :hub)""",
    dates=("received_at",),
)
