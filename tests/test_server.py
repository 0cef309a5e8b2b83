"""`gateway serve` as a real gunicorn process: intake over HTTP and the keep-alive cap."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fhirserver import free_port
from support import FHIR_JSON, FIXTURES

from gateway.server import keepalive_cap

GATEWAY = Path(sys.executable).parent / "gateway"
REFERRAL = (FIXTURES / "vision" / "01-new-referral.json").read_bytes()
CAP = 3


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.db'}",
        "GATEWAY_OUTBOX_IN_SERVE": "0",
        **extra,
    }


def _wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "gateway serve exited during start-up"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail("gateway serve did not become healthy within 60 s")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """One worker of `gateway serve` whose keep-alive connections close every CAP requests."""
    tmp_path = tmp_path_factory.mktemp("serve")
    env = _env(tmp_path, GATEWAY_KEEPALIVE_REQUESTS=str(CAP))
    created = subprocess.run(
        [str(GATEWAY), "keys", "create", "--source", "vision"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    argv = [str(GATEWAY), "serve", "--port", str(port), "--workers", "1"]
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(port, process)
        yield port, key
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _exchange(conn: http.client.HTTPConnection) -> tuple[int, str]:
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    response.read()
    return response.status, response.getheader("Connection", "")


def test_every_cap_th_answer_closes_the_connection(served: tuple[int, str]) -> None:
    port, _ = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    first = [_exchange(conn) for _ in range(CAP)]
    assert first == [(200, "keep-alive")] * (CAP - 1) + [(200, "close")]
    assert conn.sock is None  # http.client closed it, as the answer said
    # The next request opens a new connection, whose count starts again.
    second = [_exchange(conn) for _ in range(CAP)]
    assert second == first
    conn.close()


def test_a_referral_posted_on_the_closing_request_is_stored_once(served: tuple[int, str]) -> None:
    port, key = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": FHIR_JSON}
    answers = []
    for _ in range(CAP):
        conn.request("POST", "/fhir/ServiceRequest", REFERRAL, headers)
        response = conn.getresponse()
        response.read()
        answers.append(
            (response.status, response.getheader("Connection"), response.getheader("X-Record-Id"))
        )
    conn.close()
    # The first creates the record; the resends (the last on a closing answer) find it.
    assert answers[0][0] == 201
    assert [status for status, _, _ in answers[1:]] == [200] * (CAP - 1)
    assert answers[-1][1] == "close"
    assert len({record for _, _, record in answers}) == 1


@pytest.mark.parametrize(
    ("limit", "closing"),
    [(3, [3, 6, 9]), (1, list(range(1, 10))), (0, [])],
)
def test_keepalive_cap_marks_the_limit_th_request(limit: int, closing: list[int]) -> None:
    cap = keepalive_cap(limit)
    marked = []
    for number in range(1, 10):
        req = SimpleNamespace(req_number=number, must_close=False)
        cap(None, req)
        if req.must_close:
            marked.append(number)
    assert marked == closing
