"""Fault-injection fixtures: a store, the processes of a test, and seeded random choices.

Random kill points come from one seed per session, printed in the "fault injection" summary
with each test's counts; ``GATEWAY_FAULT_SEED=<n>`` repeats a run's choices. Every process a
test started is killed at teardown, pass or fail.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults.procs import REPORT, Processes, Store

_SEED = int(os.environ.get("GATEWAY_FAULT_SEED") or random.SystemRandom().randrange(10**9))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the seed and the fault counts, whatever the outcome."""
    if not REPORT:
        return
    terminalreporter.section("fault injection")
    terminalreporter.write_line(f"seed {_SEED} (GATEWAY_FAULT_SEED={_SEED} repeats the choices)")
    for line in REPORT:
        terminalreporter.write_line(line)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """This test's random choices, from the session seed and the test's name."""
    REPORT.append(f"{request.node.name} (seed {_SEED}):")
    print(f"fault seed {_SEED}")
    return random.Random(f"{_SEED}:{request.node.name}")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Gateway processes for one test, all stopped at teardown."""
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A fresh, migrated SQLite store."""
    return Store(tmp_path)
