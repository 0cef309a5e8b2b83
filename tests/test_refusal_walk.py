"""The refusal walk itself: what counts as naming an element of the sender's message."""

from __future__ import annotations

import pytest
from refusal_walk import names_sender_element


@pytest.mark.parametrize(
    "location",
    [
        "Bundle.entry[1].resource.birthDate",
        "ServiceRequest.contained[0].identifier[0].value",
        "resourceType",
        "PID-3[2].1",
        "PID-3.1 | PID-3[2].1",
        "MSH.9",
        "ZSP",
        "segment[3]",
    ],
)
def test_sender_elements_are_recognised(location: str) -> None:
    assert names_sender_element(location)


@pytest.mark.parametrize("location", ["", "risks.items", "person.date_of_birth", "record"])
def test_record_paths_and_nothing_are_not(location: str) -> None:
    assert not names_sender_element(location)
