"""Translation rates of the gateway on PYTHONPATH, printed as JSON (a child of before_after.py).

Run with the tree to measure as the working directory and first on PYTHONPATH: it imports
that tree's gateway and uses that tree's mappings and fixtures, so an older commit can be
measured beside the current one in the same benchmark run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson

from gateway.mapping.engine import load_mappings

try:  # the layout since gateway/intake/ (an older commit's tree has the old one)
    from gateway.intake.fhir import translate_message
    from gateway.intake.hl7v2 import translate_v2
except ImportError:
    from gateway.hl7v2.intake import translate_v2  # type: ignore[no-redef]
    from gateway.referral import translate_message  # type: ignore[no-redef]

FHIR_SOURCES = ("emis-web", "systmone", "vision", "uk-core")
V2_SOURCE = "gp-v2"


def rate(call: object, seconds: float) -> float:
    """Calls per CPU second of ``call()`` over ``seconds`` of this process's CPU time, after
    a short warm-up: a rate per core that neighbours on a busy machine barely move."""
    assert callable(call)
    for _ in range(200):
        call()
    calls, started = 0, time.process_time()
    while (elapsed := time.process_time() - started) < seconds:
        for _ in range(100):
            call()
        calls += 100
    return calls / elapsed


def main() -> None:
    """Print {"load_ms": ..., "<source>": per-second, ...} for the tree in the cwd."""
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    root = Path.cwd()
    started = time.perf_counter()
    mappings = load_mappings(root / "mappings")
    out: dict[str, float] = {"load_ms": (time.perf_counter() - started) * 1000}
    for source in FHIR_SOURCES:
        body = (root / "fixtures" / source / "01-new-referral.json").read_bytes()
        out[source] = rate(
            lambda s=source, b=body: translate_message(mappings, s, b, "application/fhir+json"),
            seconds,
        )
    raw = (root / "fixtures" / V2_SOURCE / "01-new-referral.hl7").read_bytes()
    out["gp-v2 REF^I12"] = rate(lambda: translate_v2(mappings, V2_SOURCE, raw), seconds)
    print(orjson.dumps(out).decode())


if __name__ == "__main__":
    main()
