"""Domain exceptions, translated to OperationOutcome or HL7 v2 acknowledgements at the edge."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose.

    ``status`` is the HTTP status the edge answers with, ``issue_code`` the FHIR
    IssueType code, and ``expression`` the FHIRPath-style location of the offending
    element (None when the error concerns the whole message).
    """

    status = 500
    issue_code = "exception"
    severity = "error"

    def __init__(self, message: str, *, expression: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression


class InvalidMessage(GatewayError):
    """The sender's message cannot be parsed or does not have the required structure."""

    status = 400
    issue_code = "structure"


class InvalidContent(GatewayError):
    """The message parses but its content breaks a rule (a mandatory item, a check digit)."""

    status = 422
    issue_code = "invalid"


class RequiredMissing(InvalidContent):
    """Mandatory data is missing from the message."""

    issue_code = "required"


class UnknownCode(InvalidContent):
    """A code map with the reject policy met a code it does not know."""

    issue_code = "code-invalid"


class PayloadTooLarge(GatewayError):
    """The body is over the configured limit."""

    status = 413
    issue_code = "too-costly"


class UnsupportedMediaType(GatewayError):
    """The Content-Type is not one the endpoint accepts."""

    status = 415
    issue_code = "not-supported"


class NotSupported(GatewayError):
    """The message is well formed but of a kind this endpoint does not handle."""

    status = 422
    issue_code = "not-supported"


class Unauthenticated(GatewayError):
    """No credential, or one the gateway does not know."""

    status = 401
    issue_code = "login"


class Forbidden(GatewayError):
    """A valid credential that may not do this (for example, another source's key)."""

    status = 403
    issue_code = "forbidden"


class NotFound(GatewayError):
    """The addressed record or resource does not exist."""

    status = 404
    issue_code = "not-found"


class Conflict(GatewayError):
    """The request conflicts with the stored state."""

    status = 409
    issue_code = "conflict"


class StoreUnavailable(GatewayError):
    """The store could not be reached or could not commit; the sender may retry."""

    status = 503
    issue_code = "transient"


class MappingError(Exception):
    """A mapping file is invalid; raised at load time and stops start-up."""

    def __init__(self, message: str, *, file: str, line: int | None = None) -> None:
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}")
        self.file = file
        self.line = line


class DeliveryError(Exception):
    """A delivery to a destination failed; the outbox worker decides what happens next."""

    def __init__(self, reason: str, *, response: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.response = response


class TransientDeliveryError(DeliveryError):
    """Worth retrying: a timeout, a refused connection, 5xx, 429, an HL7 v2 AR."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, response: str | None = None
    ) -> None:
        super().__init__(reason, response=response)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Not worth retrying unchanged: a 4xx with an OperationOutcome, an HL7 v2 AE."""
