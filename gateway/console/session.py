"""Who is signed in to the console, and the CSRF token of their session (flask.session)."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from flask import request, session

from gateway.store.audit import Actor

#: A console session lasts a working shift, then the key is asked for again.
SESSION_SECONDS = 8 * 3600
ROLES = ("admin", "viewer")
_USER = "console_user"
_CSRF = "console_csrf"


@dataclass(frozen=True)
class User:
    """A signed-in console user: the key's principal and its role (admin or viewer)."""

    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        """Admins act (reprocess, replay, search by NHS number); viewers only look."""
        return self.role == "admin"

    def actor(self) -> Actor:
        """The audit trail's actor for this user, with the request's address."""
        return Actor("console", self.name, request.remote_addr)


def sign_in(name: str, role: str) -> None:
    """Start a fresh session (a new CSRF token too) for ``name`` in ``role``."""
    session.clear()
    session[_USER] = {"name": name, "role": role, "until": int(time.time()) + SESSION_SECONDS}
    session[_CSRF] = secrets.token_urlsafe(32)


def sign_out() -> None:
    """End the session."""
    session.clear()


def current_user() -> User | None:
    """The signed-in user, or None (never signed in, signed out or expired)."""
    held = session.get(_USER)
    if not isinstance(held, dict) or held.get("role") not in ROLES:
        return None
    if int(held.get("until", 0)) < time.time():
        return None
    return User(str(held["name"]), str(held["role"]))


def csrf_token() -> str:
    """The session's CSRF token, made on first use (the sign-in form needs one too)."""
    token = session.get(_CSRF)
    if not isinstance(token, str):
        token = session[_CSRF] = secrets.token_urlsafe(32)
    return token


def csrf_valid(presented: str | None) -> bool:
    """True when ``presented`` is the session's token."""
    token = session.get(_CSRF)
    return bool(presented and isinstance(token, str) and hmac.compare_digest(presented, token))
