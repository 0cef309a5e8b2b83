"""HL7 v2 test fixtures: a gateway and a real MLLP listener on one store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from v2wire import Wire, start_wire, stop_wire


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[Callable[..., Wire]]:
    """Start a Wire (configuration overrides as keywords); all are stopped after the test."""
    started: list[Wire] = []

    def start(**config: Any) -> Wire:
        started.append(start_wire(f"sqlite:///{tmp_path / f'gateway{len(started)}.db'}", **config))
        return started[-1]

    yield start
    for item in started:
        stop_wire(item)
