"""Instructions per translation under callgrind, for the working tree and an earlier commit.

A rate per second moves with the machine (other work, CPU steal on a shared host); the
number of instructions one translation executes does not. Each measurement runs the tree's
own ``translate_rate.py`` loop body in a child under ``valgrind --tool=callgrind`` with
instrumentation off until the mappings are loaded and warmed up, then on for N calls; the
figure is (count for N calls - count for 0 calls) / N, so start-up and the switch cancel.

    .venv/bin/python bench/instructions.py --before b5b565c      # needs valgrind (apt)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from slow_clients import tree_of

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("emis-web", "systmone", "vision", "uk-core", "gp-v2")

# Run in the child with the tree first on PYTHONPATH: it imports that tree's gateway.
_CHILD = """
import os, subprocess, sys
from pathlib import Path
from gateway.mapping.engine import load_mappings
try:
    from gateway.intake.fhir import translate_message
    from gateway.intake.hl7v2 import translate_v2
except ImportError:
    from gateway.hl7v2.intake import translate_v2
    from gateway.referral import translate_message
source, calls = sys.argv[1], int(sys.argv[2])
mappings = load_mappings(Path("mappings"))
if source == "gp-v2":
    raw = Path("fixtures/gp-v2/01-new-referral.hl7").read_bytes()
    def call(): translate_v2(mappings, source, raw)
else:
    body = Path("fixtures", source, "01-new-referral.json").read_bytes()
    def call(): translate_message(mappings, source, body, "application/fhir+json")
for _ in range(20):
    call()
subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True)
for _ in range(calls):
    call()
"""


def _count(tree: Path, source: str, calls: int) -> int:
    """Instructions callgrind collected for ``calls`` translations (plus the switch)."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            _CHILD,
            source,
            str(calls),
        ],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"callgrind gave no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_call(tree: Path, source: str, calls: int) -> float:
    """Instructions one translation of ``source``'s first fixture executes in ``tree``."""
    return (_count(tree, source, calls) - _count(tree, source, 0)) / calls


def main() -> None:
    """Print instructions per translation, before and after, per source."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="an earlier commit to count beside the working tree")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--sources", nargs="*", default=list(SOURCES))
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    print(f"Instructions per translation (callgrind, {args.calls} calls)")
    print(f"   {'source':<10}{'before':>12}{'after':>12}{'change':>9}")
    before: dict[str, float] = {}
    if args.before:
        with tree_of(args.before) as tree:
            before = {s: per_call(tree, s, args.calls) for s in args.sources}
    for source in args.sources:
        after = per_call(ROOT, source, args.calls)
        old = before.get(source)
        change = f"{(after / old - 1) * 100:+.1f} %" if old else ""
        print(f"   {source:<10}{old or 0:>12,.0f}{after:>12,.0f}{change:>9}")


if __name__ == "__main__":
    main()
