"""Slow HTTP clients against a real `gateway serve`: they cost other clients no thread and no
time, and a request that is not whole within GATEWAY_REQUEST_TIMEOUT is answered 408 and
closed.

The server runs at the shipped 2 workers x 8 threads with the timeout scaled down to 2 s.
Half of the 40 slow clients trickle a header line a byte every 0.2 s; the other half send a
source's key, a head announcing a 10 kB body and 100 bytes of it, then stall. Whoever is
closed connects again at once, so 40 are always there.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fhirserver import free_port
from support import FHIR_JSON, FIXTURES, wait_healthy

GATEWAY = str(Path(sys.executable).parent / "gateway")
REFERRAL = (FIXTURES / "vision" / "01-new-referral.json").read_bytes()
TIMEOUT_S = 2
SLOW = 40
SAMPLES = 100  # per probe: the p99 (nearest rank) is the second-slowest sample
EXTRA_MS = 100.0
PROBE_TIMEOUT_S = 2.0


class Served:
    """A running `gateway serve`: its port, a source key for vision, its log."""

    def __init__(self, port: int, key: str, log: Path) -> None:
        self.port = port
        self.key = key
        self.log = log

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A new TCP connection to it."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`gateway serve` at 2 workers x 8 threads, GATEWAY_REQUEST_TIMEOUT=2."""
    tmp = tmp_path_factory.mktemp("slow-clients")
    env = {
        **os.environ,
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp / 'gateway.db'}",
        "GATEWAY_OUTBOX_IN_SERVE": "0",
        "GATEWAY_REQUEST_TIMEOUT": str(TIMEOUT_S),
        "GATEWAY_WORKERS": "2",
        "GATEWAY_THREADS": "8",
        "XDG_RUNTIME_DIR": str(tmp),
    }
    created = subprocess.run(
        [GATEWAY, "keys", "create", "--source", "vision"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    log_path = tmp / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [GATEWAY, "serve", "--port", str(port)], env=env, stdout=log, stderr=log
        )
        try:
            wait_healthy(port, process)
            yield Served(port, key, log_path)
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _trickle_head() -> bytes:
    return b"POST /fhir/ServiceRequest HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def _stall_head(key: str) -> bytes:
    return (
        b"POST /fhir/ServiceRequest HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\n"
        b"Content-Type: application/fhir+json\r\nContent-Length: 10000\r\n\r\n" + b"{" * 100
    )


class SlowClients:
    """SLOW slow connections on one selector thread, each reopened when the server closes it."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self, selector: selectors.BaseSelector, trickle: bool) -> None:
        sock = self.served.connect()
        sock.sendall(_trickle_head() if trickle else _stall_head(self.served.key))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, trickle)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for n in range(SLOW):
            self._open(selector, trickle=n % 2 == 0)
        while not self._stop.wait(0.2):
            for key, _ in selector.select(0):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    closed = not sock.recv(65536)
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if closed:
                    selector.unregister(sock)
                    sock.close()
                    self.reopened += 1
                    self._open(selector, key.data)
            for key in list(selector.get_map().values()):
                if key.data:
                    assert isinstance(key.fileobj, socket.socket)
                    with contextlib.suppress(OSError):
                        key.fileobj.send(b"a")
        for key in list(selector.get_map().values()):
            assert isinstance(key.fileobj, socket.socket)
            key.fileobj.close()
        selector.close()


def _probe_ms(served: Served, kind: str) -> float:
    """One /healthz or referral POST on a new connection: ms until the whole answer, or the
    probe timeout when there was none in time (or no 2xx)."""
    start = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=PROBE_TIMEOUT_S)
        if kind == "healthz":
            conn.request("GET", "/healthz")
        else:
            headers = {"Authorization": f"Bearer {served.key}", "Content-Type": FHIR_JSON}
            conn.request("POST", "/fhir/ServiceRequest", REFERRAL, headers)
        response = conn.getresponse()
        response.read()
        conn.close()
        ok = response.status in (200, 201)
    except (OSError, http.client.HTTPException):
        ok = False
    elapsed = (time.perf_counter() - start) * 1000
    return elapsed if ok else PROBE_TIMEOUT_S * 1000


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[-(len(ordered) // 100) - 1]  # nearest rank: 1 in 100 may be slower


def _quiet_p99(served: Served) -> dict[str, float]:
    for kind in ("healthz", "referral") * 5:  # warm both workers
        _probe_ms(served, kind)
    samples: dict[str, list[float]] = {"healthz": [], "referral": []}
    for _ in range(SAMPLES):
        for kind, values in samples.items():
            values.append(_probe_ms(served, kind))
    return {kind: _p99(values) for kind, values in samples.items()}


def test_40_slow_clients_add_under_100_ms_at_p99(served: Served) -> None:
    quiet = _quiet_p99(served)
    limit = {kind: p99 + EXTRA_MS for kind, p99 in quiet.items()}
    over: dict[str, list[float]] = {"healthz": [], "referral": []}
    with SlowClients(served) as slow:
        time.sleep(1.0)  # every slow client has sent what it will send at once
        for _ in range(SAMPLES):
            for kind, late in over.items():
                ms = _probe_ms(served, kind)
                if ms > limit[kind]:
                    late.append(round(ms, 1))
            # Two late samples in SAMPLES put the p99 over: stop there (today's code would
            # otherwise wait out the probe timeout SAMPLES times).
            if any(len(late) > SAMPLES // 100 for late in over.values()):
                break
        answered = time.monotonic() + TIMEOUT_S + 3
        while slow.reopened < SLOW and time.monotonic() < answered:
            time.sleep(0.1)
    assert {k: v for k, v in over.items() if len(v) > SAMPLES // 100} == {}, (
        f"p99 over quiet p99 {quiet} + {EXTRA_MS} ms"
    )
    assert slow.reopened >= SLOW, "every slow client should have been answered 408 and closed"


def _answer_and_close(sock: socket.socket, wait: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes or ``wait`` s pass, and whether it closed."""
    sock.settimeout(wait)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data, False
    return data, True


@pytest.mark.parametrize("kind", ["trickled head", "stalled body", "nothing sent"])
def test_a_request_not_whole_in_time_is_answered_408_and_closed(served: Served, kind: str) -> None:
    sock = served.connect()
    start = time.monotonic()
    if kind == "trickled head":
        sock.sendall(_trickle_head())
        sock.setblocking(False)
        while time.monotonic() - start < TIMEOUT_S + 5:  # a byte every 0.2 s until answered
            time.sleep(0.2)
            try:
                sock.recv(1, socket.MSG_PEEK)
                break
            except BlockingIOError:
                sock.send(b"a")
    elif kind == "stalled body":
        sock.sendall(_stall_head(served.key))
    data, closed = _answer_and_close(sock, TIMEOUT_S + 5)
    answered_after = time.monotonic() - start
    sock.close()
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), data[:200]
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"\r\nConnection: close\r\n" in head + b"\r\n"
    assert b'"code":"timeout"' in body
    assert closed, "the connection should be closed after the 408"
    assert TIMEOUT_S - 0.5 < answered_after < TIMEOUT_S + 1.5
