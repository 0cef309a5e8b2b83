"""The operator console: server-rendered pages under /console for the on-call operator.

Sign in with an admin or viewer key (a session cookie), search inbound messages, open one,
reprocess refused ones (admins), watch the outbox and replay dead letters (admins), see the
volumes and read the audit trail. Every read of a message or record and every action is
appended to the audit trail. Pages work without JavaScript.
"""

from __future__ import annotations

from gateway.console import audit, auth, messages, outbox, reprocess, volumes
from gateway.console.blueprint import bp

__all__ = ["audit", "auth", "bp", "messages", "outbox", "reprocess", "volumes"]
