"""Every refusal the test suite provokes must name an element of the sender's message.

An autouse fixture (see conftest.py) wraps the one function that keeps a refused message,
``store_rejected``, wherever it is imported, and checks each refusal's location when the
test ends: a FHIRPath into the message (``Bundle.entry[1].resource.birthDate``,
``ServiceRequest.subject``) or an HL7 v2 location (``PID-3[2].1``, ``MSH-9``, ``segment[2]``),
never a path of the gateway's own record (``risks.items``) and never nothing.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import gateway.store.messages as messages_module

#: Statuses about the request rather than its content (size, media type) or about the
#: gateway itself (a fault, an unavailable store): there is no element to name.
NO_ELEMENT = {413, 415, 500, 503}
_SENDER = re.compile(
    r"^(?:[A-Z][A-Za-z]+(?:[.\[]|$)"  # FHIR: Bundle.entry[1]..., Patient.birthDate, resourceType
    r"|resourceType$"
    r"|[A-Z][A-Z0-9]{2}(?:[-.\[]|$)"  # HL7 v2: PID-3[2].1, MSH.9, ZSP
    r"|segment\[\d+\]"
    r"|\$\.|body$)"  # the body as a whole (unreadable JSON or ER7 text)
)


#: Bodies that could not be read at all have no element to name; their text gives the place.
UNREADABLE = (
    "Malformed JSON",
    "Malformed XML",
    "The body is not valid UTF-8",
    "The JSON body is nested too deeply",
    "DTDs are not allowed",
)


def names_sender_element(location: str) -> bool:
    """Whether a refusal's location is an element of the sender's message."""
    return bool(location) and all(_SENDER.match(part.strip()) for part in location.split("|"))


@pytest.fixture(autouse=True)
def every_refusal_names_an_element(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if any message it had refused was kept without a sender's element."""
    original = messages_module.store_rejected
    seen: list[tuple[int, dict[str, Any]]] = []

    def recording(db: Any, message: Any, http: int, problem: dict[str, Any], **kw: Any) -> Any:
        seen.append((http, problem))
        return original(db, message, http, problem, **kw)

    wrapped: Callable[..., Any] = recording
    for name, module in list(sys.modules.items()):
        if name.startswith("gateway") and getattr(module, "store_rejected", None) is original:
            monkeypatch.setattr(module, "store_rejected", wrapped)
    yield
    bad = [
        (status, problem)
        for status, problem in seen
        if status not in NO_ELEMENT
        and not str(problem.get("message", "")).startswith(UNREADABLE)
        and not names_sender_element(problem.get("location") or "")
    ]
    assert not bad, f"refusals that name no element of the sender's message: {bad}"
