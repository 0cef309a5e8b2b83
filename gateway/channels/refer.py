"""The self-referral web form: ``GET``/``POST /refer`` and the confirmation page.

Plain HTML (GOV.UK Design System patterns, no JavaScript needed). A post is checked for its
size, its client address's rate, its CSRF token (kept in the signed session) and a honeypot
field before its answers are; the answers become a JSON document that goes through the one
intake pipeline as source ``self-referral``. The confirmation shows the reference to quote.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
import uuid
from collections import deque

import orjson
from flask import (
    Blueprint,
    Flask,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as WerkzeugResponse

from gateway.channels.refer_form import (
    FIELD_OF_ELEMENT,
    LIMITS,
    FieldError,
    answers_of,
    check,
    document,
)
from gateway.errors import GatewayError
from gateway.intake.community import JSON_MEDIA_TYPE, DocumentIntake, reference_of
from gateway.services import current_services

bp = Blueprint("refer", __name__, url_prefix="/refer")

SOURCE = "self-referral"
#: The hidden field people never see and bots fill in.
HONEYPOT = "website"
_TOKEN = "refer_token"
_FORM = "refer_form"
_DONE = "refer_done"
_LIMITER = "refer_limiter"


class ClientLimiter:
    """At most ``limit`` posts per client address in any ``window`` seconds (per process)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> bool:
        """Whether ``client`` may post now; a post that is allowed is counted."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._seen) > 10_000:  # forget quiet addresses rather than grow
                self._seen = {
                    k: v for k, v in self._seen.items() if v and v[-1] > now - self.window
                }
            times = self._seen.setdefault(client, deque())
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.limit:
                return False
            times.append(now)
            return True


def limiter(app: Flask) -> ClientLimiter:
    """The app's limiter for form posts, made from its configuration on first use."""
    found = app.extensions.get(_LIMITER)
    if not isinstance(found, ClientLimiter):
        found = ClientLimiter(
            int(app.config["REFER_RATE_LIMIT"]), float(app.config["REFER_RATE_WINDOW"])
        )
        app.extensions[_LIMITER] = found
    return found


def _token() -> str:
    """This browser's CSRF token and form id (made on first sight)."""
    if _TOKEN not in session:
        session[_TOKEN] = secrets.token_urlsafe(32)
        session[_FORM] = str(uuid.uuid4())
    return str(session[_TOKEN])


def _form_page(
    answers: dict[str, str], errors: list[FieldError], status: int = 200
) -> tuple[str, int]:
    """The form, with the answers given so far and what to put right."""
    by_field: dict[str, str] = {}
    for error in errors:
        by_field.setdefault(error.field, error.message)
    html = render_template(
        "refer/form.html",
        answers=answers,
        errors=errors,
        error_of=by_field,
        limits=LIMITS,
        token=_token(),
        honeypot=HONEYPOT,
    )
    return html, status


def _problem(title: str, message: str, status: int) -> tuple[str, int]:
    """A page saying, in plain words, why the form could not be sent."""
    return render_template("refer/problem.html", title=title, message=message), status


@bp.get("")
def form() -> tuple[str, int]:
    """The empty form."""
    return _form_page(answers_of({}), [])


@bp.post("")
def submit() -> WerkzeugResponse | tuple[str, int]:
    """Check and send a self-referral, then show its reference (or what to put right)."""
    cap = int(current_app.config["REFER_MAX_BYTES"])
    if request.content_length is None or request.content_length > cap:
        return _problem(
            "Your answers are too long",
            "Shorten your answers and try again.",
            413 if request.content_length else 411,
        )
    if not limiter(current_app).allow(request.remote_addr or "unknown"):
        window = int(current_app.config["REFER_RATE_WINDOW"]) // 60 or 1
        return _problem(
            "Too many tries",
            f"You have sent this form too many times. Wait {window} minutes and try again.",
            429,
        )
    sent = request.form.get("csrf_token", "")
    if sent and hmac.compare_digest(sent, str(session.get(_DONE, {}).get("token", ""))):
        return redirect(url_for("refer.confirmation"), 303)  # sent twice: it is already sent
    if not sent or not hmac.compare_digest(sent, str(session.get(_TOKEN, ""))):
        return _problem(
            "Your session has ended",
            "We could not send your answers because the page had been open too long or was "
            "opened in another window. Start again.",
            400,
        )
    if request.form.get(HONEYPOT):
        return _problem("We could not send your answers", "Start again.", 400)
    answers = answers_of(request.form)
    errors = check(answers)
    if errors:
        return _form_page(answers, errors, 400)
    body = orjson.dumps(document(answers, str(session[_FORM])))
    intake = DocumentIntake(current_services().intake.pipeline)
    try:
        stored = intake.receive(SOURCE, body, JSON_MEDIA_TYPE, channel="self-referral-form")
    except GatewayError as exc:
        field = FIELD_OF_ELEMENT.get(exc.expression or "")
        if field is None or exc.status >= 500:
            return _problem(
                "Sorry, there is a problem",
                "We could not send your answers just now. Try again later.",
                503 if exc.status >= 500 else 400,
            )
        return _form_page(answers, [FieldError(field, "Check this answer")], 400)
    session[_DONE] = {"token": sent, "reference": reference_of(stored.referral_id)}
    session.pop(_TOKEN, None)
    session.pop(_FORM, None)
    return redirect(url_for("refer.confirmation"), 303)


@bp.get("/confirmation")
def confirmation() -> WerkzeugResponse | tuple[str, int]:
    """The reference of the self-referral this browser sent."""
    done = session.get(_DONE)
    if not isinstance(done, dict) or "reference" not in done:
        return redirect(url_for("refer.form"), 303)
    return render_template("refer/confirmation.html", reference=done["reference"]), 200
