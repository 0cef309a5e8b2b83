"""Domain exceptions, translated to OperationOutcome or HL7 v2 acknowledgements at the edge."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.hl7v2.message import V2Message

#: How a refusal is answered: ``gateway.refusals.decide``, which installs itself here when
#: the package loads (it imports this module, so this module cannot import it).
_decide: Callable[[GatewayError], Any] | None = None


def install_decider(decide: Callable[[GatewayError], Any]) -> None:
    """Name the function that decides every refusal's status and codes (gateway.refusals)."""
    global _decide
    _decide = decide


def _decision(error: GatewayError) -> Any:
    """The installed decision for ``error``."""
    if _decide is None:
        raise RuntimeError("gateway.refusals has not installed its decision")
    return _decide(error)


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose.

    The class says what is wrong; ``gateway.refusals.decide`` alone says how that is
    answered: the HTTP status (``status``), the FHIR IssueType (``issue_code``), the BaRS
    http-error code and the HL7 v2 acknowledgement code. ``expression`` is the location of
    the offending element in the sender's message (a FHIRPath such as
    ``Bundle.entry[1].resource.identifier[0].value``, or an HL7 v2 location), None when the
    error concerns the whole message.
    """

    severity = "error"

    def __init__(self, message: str, *, expression: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression

    @property
    def status(self) -> int:
        """The HTTP status the edge answers with (decided in gateway.refusals)."""
        status: int = _decision(self).status
        return status

    @property
    def issue_code(self) -> str:
        """The FHIR IssueType code of the refusal (decided in gateway.refusals)."""
        code: str = _decision(self).issue_code
        return code


class InvalidMessage(GatewayError):
    """The sender's message cannot be parsed or does not have the required structure."""


class BrokenInvariant(InvalidMessage):
    """The message breaks a FHIR invariant (an extension without url, or with two values)."""


class InvalidContent(GatewayError):
    """The message parses but its content breaks a rule (a mandatory item, a check digit)."""


class RequiredMissing(InvalidContent):
    """Mandatory data is missing from the message."""


class UnknownCode(InvalidContent):
    """A code map with the reject policy met a code it does not know."""


class PayloadTooLarge(GatewayError):
    """The body is over the configured limit."""


class UnsupportedMediaType(GatewayError):
    """The Content-Type is not one the endpoint accepts."""


class NotSupported(GatewayError):
    """The message is well formed but of a kind this endpoint does not handle."""


class Unauthenticated(GatewayError):
    """No credential, or one the gateway does not know."""


class Forbidden(GatewayError):
    """A valid credential that may not do this (for example, another source's key)."""


class NotFound(GatewayError):
    """The addressed record or resource does not exist."""


class Conflict(GatewayError):
    """The request conflicts with the stored state."""


class StoreUnavailable(GatewayError):
    """The store could not be reached or could not commit; the sender may retry."""


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


class NotAnHl7Message(InvalidMessage):
    """The text does not start with an MSH segment: there is no HL7 v2 message to answer."""


class V2ParseError(InvalidMessage):
    """A message whose MSH was read but whose text breaks ER7; ``header`` holds that MSH."""

    def __init__(self, message: str, *, expression: str, header: V2Message | None) -> None:
        super().__init__(message, expression=expression)
        self.header = header


class OverLimit(V2ParseError):
    """A message over a configured limit: too many segments or repetitions, a field too long."""
