"""Section 0: translation speed of an earlier commit beside the working tree, in one run.

The earlier commit's files are extracted with ``git archive`` into a temporary folder
(``slow_clients.tree_of``; no git state is touched); each tree's own code,
mappings and fixtures are timed by ``translate_rate.py`` in a child process pinned to one
core, alternating before and after so that both see the same neighbours.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
from slow_clients import tree_of

ROOT = Path(__file__).resolve().parent.parent
TARGET_PER_SECOND = 5000.0


def _measure(tree: Path, seconds: float) -> dict[str, float]:
    """One child run over ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(ROOT / "bench" / "translate_rate.py"), str(seconds)]
    if hasattr(os, "sched_setaffinity"):
        command = ["taskset", "-c", "0", *command]
    done = subprocess.run(command, cwd=tree, env=env, check=True, capture_output=True, text=True)
    return orjson.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(before: str, seconds: float, rounds: int = 3, tree: Path | None = None) -> dict[str, Any]:
    """Median rates per source, before (commit ``before``, or its extracted ``tree``) and
    after (the working tree)."""
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with ExitStack() as stack:
        if tree is None:
            tree = stack.enter_context(tree_of(before))
        for _ in range(rounds):
            runs["before"].append(_measure(tree, seconds))
            runs["after"].append(_measure(ROOT, seconds))
    medians = {
        side: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for side, rs in runs.items()
    }
    return {"before_ref": before, "rounds": rounds, "seconds": seconds, **medians}


def report(data: dict[str, Any]) -> None:
    """Print the before/after table."""
    print(
        f"0. Translation before ({data['before_ref']}) and after (working tree), one core,"
        f" median of {data['rounds']} alternating runs of {data['seconds']} s per source"
    )
    print(f"   {'measure':<16}{'before':>12}{'after':>12}{'change':>9}")
    for key, after in data["after"].items():
        before = data["before"].get(key)
        unit = "ms" if key == "load_ms" else "/s"
        change = f"{(after / before - 1) * 100:+.0f} %" if before else ""
        mark = "" if unit == "ms" or after >= TARGET_PER_SECOND else "  below 5,000/s"
        print(f"   {key:<16}{before or 0:>10,.0f}{unit}{after:>10,.0f}{unit}{change:>9}{mark}")
