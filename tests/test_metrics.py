"""Metrics: counts from several processes add up in one exposition; the outbox is read live."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import sys
from gateway import metrics
for _ in range(int(sys.argv[2])):
    metrics.MESSAGES.labels("gp-v2", "mllp", "accepted").inc()
metrics.INTAKE_SECONDS.labels("mllp").observe(0.004)
metrics.MLLP_CONNECTIONS.labels("gp-v2").inc()
"""

_PARENT = """
import sys
from gateway.metrics_dir import prepare
prepare(sys.argv[1])
import subprocess
for n in (3, 4):
    subprocess.run([sys.executable, "-c", sys.argv[2], sys.argv[1], str(n)], check=True)
from gateway import metrics
collector = metrics.OutboxCollector(lambda: [("pending", 7, 12.5), ("dead", 1, None)])
body, kind = metrics.exposition(collector)
print(kind)
print(body.decode())
"""


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_counts_from_every_process_add_up(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", _PARENT, str(tmp_path / "metrics"), _CHILD],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    kind, _, text = done.stdout.partition("\n")
    assert kind.startswith("text/plain")
    seen = _samples(text)
    key = 'gateway_messages_total{channel="mllp",outcome="accepted",source="gp-v2"}'
    assert seen[key] == 7
    assert seen['gateway_intake_seconds_count{channel="mllp"}'] == 2
    assert seen['gateway_intake_seconds_bucket{channel="mllp",le="0.005"}'] == 2
    # the children have exited, but nothing marked them dead: livesum still counts them
    assert seen['gateway_mllp_connections{source="gp-v2"}'] == 2
    assert seen['gateway_outbox_items{state="pending"}'] == 7
    assert seen['gateway_outbox_oldest_seconds{state="pending"}'] == 12.5
    assert seen['gateway_outbox_oldest_seconds{state="dead"}'] == 0


def test_a_single_process_counts_in_memory() -> None:
    from gateway import metrics

    before = metrics.MESSAGES.labels("uk-core", "fhir", "rejected")._value.get()
    metrics.MESSAGES.labels("uk-core", "fhir", "rejected").inc()
    body, _ = metrics.exposition()
    line = 'gateway_messages_total{channel="fhir",outcome="rejected",source="uk-core"}'
    assert f"{line} {before + 1}" in body.decode()
