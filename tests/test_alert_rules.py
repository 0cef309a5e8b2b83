"""The example Prometheus alert rules: valid, their unit tests pass, and they name real metrics.

promtool comes with Debian's ``prometheus`` package; CI installs it and sets
GATEWAY_REQUIRE_PROMTOOL=1, so there a missing promtool fails instead of skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("GATEWAY_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is required (apt-get install prometheus) but not installed")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return found


@pytest.mark.parametrize(
    "args", [("check", "rules", "alerts.yml"), ("test", "rules", "alerts_test.yml")]
)
def test_promtool_accepts_the_rules_and_their_tests(args: tuple[str, ...]) -> None:
    done = subprocess.run(
        [_promtool(), *args], cwd=RULES, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_name_only_metrics_the_gateway_exposes() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    from gateway import metrics

    exposed = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name
            exposed |= {name, f"{name}_total", f"{name}_count", f"{name}_sum", f"{name}_bucket"}
    exposed |= {"gateway_outbox_items", "gateway_outbox_oldest_seconds"}  # read at scrape
    named = set(re.findall(r"\bgateway_[a-z_]+", (RULES / "alerts.yml").read_text()))
    assert named and named <= exposed, named - exposed
