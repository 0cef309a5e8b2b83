"""Where every process of one gateway counts its metrics; set before prometheus_client loads.

prometheus_client decides at import whether it counts in memory or in files shared by many
processes, so ``gateway serve`` and ``gateway mllp`` call ``prepare`` first (this module does
not import it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(directory: str | Path) -> None:
    """Empty ``directory`` and count into it from this process and every one it starts."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):  # one by one: another process may be clearing it too
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    os.environ[ENV] = str(path)


def prepare_role(root: str | Path, role: str) -> Path:
    """Count into ``root/role`` (``serve``, ``mllp``, ``worker``), emptied first; its path.

    Each role restarts on its own, so each clears only its own folder; ``/metrics`` reads
    every folder under ``root``.
    """
    path = Path(root) / role
    prepare(path)
    return path


def start_counting(config: Mapping[str, Any], role: str) -> None:
    """Before a process of ``role`` forks or counts: metrics on or off, its folder emptied."""
    from gateway.metrics_hooks import switch

    on = bool(int(config["METRICS"]))
    switch(on)
    if on:
        prepare_role(config["METRICS_DIR"], role)
        # Loaded now (tens of ms), not by the first message; forked workers inherit it.
        import gateway.metrics  # noqa: F401
