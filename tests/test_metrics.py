"""Metrics and health: counts from several processes add up in one exposition (the real
`gateway serve` with two workers and `gateway mllp`), who may scrape, /readyz."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from fhirserver import free_port
from support import FHIR_JSON, FIXTURES, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
GATEWAY = Path(sys.executable).parent / "gateway"

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


Families = dict[str, list[tuple[dict[str, str], float]]]


def _families(text: str) -> Families:
    """Samples by name, each with its labels (the exposition's own escaping is not needed)."""
    out: Families = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, _, rest = head.partition("{")
        labels = dict(
            (pair.split("=", 1)[0], pair.split("=", 1)[1].strip('"'))
            for pair in rest.rstrip("}").split(",")
            if "=" in pair
        )
        out.setdefault(name, []).append((labels, float(value)))
    return out


def _total(
    families: dict[str, list[tuple[dict[str, str], float]]], name: str, **want: str
) -> float:
    return sum(
        value
        for labels, value in families.get(name, [])
        if all(labels.get(k) == v for k, v in want.items())
    )


@pytest.fixture
def gateway_processes(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """`gateway serve` with 2 workers and `gateway mllp` for gp-v2, on one store and metrics
    folder."""
    env = {
        **os.environ,
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.db'}",
        "GATEWAY_OUTBOX_IN_SERVE": "0",
        "GATEWAY_METRICS_DIR": str(tmp_path / "metrics"),
        "GATEWAY_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("GATEWAY_METRICS", None)
    created = subprocess.run(
        [str(GATEWAY), "keys", "create", "--source", "vision"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    http_port, mllp_port = free_port(), free_port()
    logs = [(tmp_path / name).open("wb") for name in ("serve.log", "mllp.log")]
    serve = subprocess.Popen(
        [str(GATEWAY), "serve", "--port", str(http_port), "--workers", "2"],
        env=env,
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    mllp = subprocess.Popen(
        [str(GATEWAY), "mllp", "--listen", f"gp-v2={mllp_port}", "--no-migrate"],
        env=env,
        stdout=logs[1],
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(http_port, serve)
        _wait_listening(mllp_port, mllp)
        yield SimpleNamespace(
            http_port=http_port, mllp_port=mllp_port, key=key, metrics=tmp_path / "metrics"
        )
    finally:
        for process in (serve, mllp):
            process.terminate()
        for process in (serve, mllp):
            process.wait(30)
        for log in logs:
            log.close()


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "gateway mllp exited during start-up"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail("gateway mllp did not listen within 60 s")


def _post(port: int, key: str, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": FHIR_JSON, "Connection": "close"}
    conn.request("POST", "/fhir/ServiceRequest", body, headers)
    status = conn.getresponse().status
    conn.close()
    return status


def _scrape(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/plain")
    text = response.read().decode()
    conn.close()
    return text


def test_metrics_add_up_over_both_web_workers_and_the_mllp_process(
    gateway_processes: SimpleNamespace,
) -> None:
    g = gateway_processes
    good = (FIXTURES / "vision" / "01-new-referral.json").read_bytes()
    bad = (FIXTURES / "vision" / "04-missing-date-of-birth.json").read_bytes()
    posted = 0
    with ThreadPoolExecutor(8) as pool:
        # Until both workers have counted (they share one socket; which takes a connection is
        # the kernel's choice), in rounds of 16 concurrent new connections.
        while posted < 160:
            statuses = list(pool.map(lambda _: _post(g.http_port, g.key, good), range(16)))
            assert set(statuses) <= {200, 201}
            posted += 16
            if len(list((g.metrics / "serve").glob("counter_*.db"))) >= 2:
                break
    assert len(list((g.metrics / "serve").glob("counter_*.db"))) == 2, "one worker took all"
    assert _post(g.http_port, g.key, bad) == 400
    referral = (FIXTURES / "gp-v2" / "01-new-referral.hl7").read_bytes()
    for _ in range(2):  # two connections, three messages each
        with socket.create_connection(("127.0.0.1", g.mllp_port), timeout=30) as sock:
            for _ in range(3):
                sock.sendall(b"\x0b" + referral + b"\x1c\x0d")
                answer = b""
                while not answer.endswith(b"\x1c\x0d"):
                    answer += sock.recv(65536)
                assert b"MSA|AA" in answer
    deadline = time.monotonic() + 10
    while True:  # the MLLP process counts a connection closed just after the client closes
        seen = _families(_scrape(g.http_port))
        if _total(seen, "gateway_mllp_connections", source="gp-v2") == 0:
            break
        assert time.monotonic() < deadline, "the MLLP connections never closed"
        time.sleep(0.05)
    messages = "gateway_messages_total"
    assert _total(seen, messages, source="vision", outcome="accepted") == posted
    assert _total(seen, messages, source="vision", outcome="rejected") == 1
    assert _total(seen, messages, source="gp-v2", channel="mllp", outcome="accepted") == 6
    assert _total(seen, "gateway_intake_seconds_count", channel="mllp") == 6
    assert _total(seen, "gateway_intake_seconds_count") == posted + 1 + 6
    assert _total(seen, "gateway_translation_seconds_count", source="gp-v2") == 6
    # the two above and the start-up probe of _wait_listening
    assert _total(seen, "gateway_mllp_connections_opened_total", source="gp-v2") == 3
    assert "gateway_outbox_items" in _scrape(g.http_port)  # the family, empty without items


def test_readyz_answers_503_when_the_store_is_unreachable(tmp_path: Path) -> None:
    from gateway.app import create_app

    unreachable = f"sqlite:///{tmp_path / 'no-such-folder' / 'gateway.db'}"
    answer = create_app({"DATABASE_URL": unreachable}).test_client().get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json() == {
        "status": "not ready",
        "checks": {"store": False, "mappings": True, "migrations": False, "outbox": False},
    }


def test_who_may_scrape(tmp_path: Path) -> None:
    from support import build_gateway

    from gateway.services import services
    from gateway.store.keys import create_key

    gw = build_gateway(
        f"sqlite:///{tmp_path / 'gateway.db'}", METRICS_SCRAPERS="10.2.0.0/16", METRICS_TOKEN="t0k"
    )
    admin = create_key(services(gw.app).db, "admin", "ops")

    def scrape(address: str, key: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return int(
            gw.client.get(
                "/metrics", headers=headers, environ_base={"REMOTE_ADDR": address}
            ).status_code
        )

    assert scrape("10.2.3.4") == 200  # a listed scraper needs no key
    assert scrape("127.0.0.1") == 401  # the default (loopback) was replaced
    assert scrape("192.0.2.1", "t0k") == 200
    assert scrape("192.0.2.1", admin) == 200
    assert scrape("192.0.2.1", gw.platform_key) == 403
    assert scrape("192.0.2.1", "wrong") == 403
    off = build_gateway(f"sqlite:///{tmp_path / 'off.db'}", METRICS=0)
    assert off.client.get("/metrics").status_code == 404


def test_delivery_attempts_dead_letters_and_outbox_ages(tmp_path: Path) -> None:
    from outbound.rows import fill, referral_rows

    from gateway import metrics
    from gateway.errors import PermanentDeliveryError, TransientDeliveryError
    from gateway.outbound.destinations import Retry
    from gateway.outbound.worker import Worker
    from gateway.store.database import Database
    from gateway.store.migrate import upgrade
    from gateway.store.outbox_ages import state_ages

    db = Database(f"sqlite:///{tmp_path / 'gateway.db'}")
    upgrade(db)
    fill(db, referral_rows(db, 2), 1)
    destination = "writeback:uk-core"
    before = {
        result: metrics.DELIVERIES.labels(destination, result)._value.get()
        for result in ("retry", "dead")
    }
    dead_before = metrics.DEAD_LETTERS.labels(destination)._value.get()
    answers = iter([TransientDeliveryError("503"), PermanentDeliveryError("400 no")])

    def deliver(item: object) -> str:
        raise next(answers)

    worker = Worker(db, {"test": deliver}, Retry(max_attempts=3, base_delay=60, max_delay=60))
    assert worker.run_once() and worker.run_once()
    assert metrics.DELIVERIES.labels(destination, "retry")._value.get() == before["retry"] + 1
    assert metrics.DELIVERIES.labels(destination, "dead")._value.get() == before["dead"] + 1
    assert metrics.DEAD_LETTERS.labels(destination)._value.get() == dead_before + 1
    ages = {state: (count, age) for state, count, age in state_ages(db)}
    assert set(ages) == {"pending", "dead"}
    assert ages["pending"][0] == ages["dead"][0] == 1
    assert 0 <= (ages["pending"][1] or -1) < 60
    db.dispose()
