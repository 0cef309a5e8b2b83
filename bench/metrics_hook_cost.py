"""What counting adds to one message: ``counted_intake`` around a take that does nothing.

Run by ``bench/run.py --metrics-compare`` in a process of its own (prometheus_client must
load after PROMETHEUS_MULTIPROC_DIR is set). It prints JSON: the best per-call time, in
microseconds, of the bare take and of the counted one, over 0.1 s windows, and their
difference: the CPU one message pays for being counted (a counter, two histograms), which
the report sets beside the server's CPU per message.
"""

from __future__ import annotations

import sys
import tempfile
import time
from typing import Any

import orjson

WINDOW_CALLS = 2000


def best_us(call: Any, seconds: float) -> float:
    """The fastest mean per-call time over windows of WINDOW_CALLS calls, in µs."""
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        for _ in range(WINDOW_CALLS):
            call()
        best = min(best, (time.perf_counter() - started) / WINDOW_CALLS * 1e6)
    return best


def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="gateway-hook-cost-") as folder:
        from gateway.metrics_dir import prepare

        prepare(folder)
        from gateway.intake.pipeline import Outcome
        from gateway.metrics_hooks import counted_intake, switch
        from gateway.store.messages import InboundMessage

        switch(True)
        message = InboundMessage(channel="mllp", source="gp-v2", body=b"", content_type="")
        answered = Outcome(None, None, b"")

        class Steps:
            def translate(self) -> dict[str, Any]:
                return {}

        def take(pipeline: Any, inbound: Any, steps: Any) -> Outcome:
            steps.translate()
            return answered

        counted = counted_intake(take)
        steps = Steps()
        bare_us = best_us(lambda: take(None, message, steps), seconds)
        counted_us = best_us(lambda: counted(None, message, steps), seconds)
    result = {"bare_us": bare_us, "counted_us": counted_us, "cost_us": counted_us - bare_us}
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)
