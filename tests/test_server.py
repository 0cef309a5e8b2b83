"""`gateway serve` as a real gunicorn process: intake over HTTP, the keep-alive cap, no
control socket unless asked for, security headers on every answer, and request framing."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fhirserver import free_port
from support import FHIR_JSON, FIXTURES, wait_healthy

from gateway.server import control_socket_options, keepalive_cap

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


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The XDG_RUNTIME_DIR of the served gateway: where gunicorn's control socket would go."""
    return tmp_path_factory.mktemp("run")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, run_dir: Path) -> Iterator[tuple[int, str]]:
    """One worker of `gateway serve` whose keep-alive connections close every CAP requests."""
    tmp_path = tmp_path_factory.mktemp("serve")
    env = _env(tmp_path, GATEWAY_KEEPALIVE_REQUESTS=str(CAP), XDG_RUNTIME_DIR=str(run_dir))
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
        wait_healthy(port, process)
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


def test_gunicorn_opens_no_control_socket_by_default(
    served: tuple[int, str], run_dir: Path
) -> None:
    # gunicorn 25.1+ would put one at $XDG_RUNTIME_DIR/gunicorn.ctl, shared by every gunicorn
    # of the user: a second `gateway serve` would take it over and remove it when stopped.
    assert list(run_dir.iterdir()) == []


def test_a_control_socket_only_where_configured() -> None:
    known = {"control_socket", "control_socket_disable"}
    assert control_socket_options("", known) == {"control_socket_disable": True}
    assert control_socket_options("/run/gw/gunicorn.ctl", known) == {
        "control_socket_disable": False,
        "control_socket": "/run/gw/gunicorn.ctl",
    }
    assert control_socket_options("", set()) == {}  # a gunicorn without the setting


def test_every_answer_says_no_store_and_nosniff(served: tuple[int, str]) -> None:
    port, key = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    requests = [
        ("GET", "/healthz", None, {}),
        ("POST", "/fhir/ServiceRequest", REFERRAL, {"Content-Type": FHIR_JSON}),
        ("GET", "/records?since=0", None, {}),  # 401: no key
        ("GET", "/no-such-path", None, {}),
    ]
    seen = []
    for method, path, body, headers in requests:
        if method == "POST":
            headers = {**headers, "Authorization": f"Bearer {key}"}
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        response.read()
        seen.append(
            (
                response.status,
                response.getheader("Cache-Control"),
                response.getheader("X-Content-Type-Options"),
            )
        )
    conn.close()
    assert [status for status, _, _ in seen] in ([200, 201, 401, 404], [200, 200, 401, 404])
    assert {(cache, sniff) for _, cache, sniff in seen} == {("no-store", "nosniff")}


# The worker reads each request whole before a thread serves it (gateway/http_front.py): these
# check that its framing agrees with HTTP/1.1 on the wire.


def _raw(port: int, data: bytes, then: bytes = b"") -> bytes:
    """Send ``data`` (then ``then`` after the first bytes of an answer) on a new connection,
    and read until the server closes it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(data)
    received = b""
    if then:
        received = sock.recv(65536)
        sock.sendall(then)
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    return received


def _statuses(received: bytes) -> list[bytes]:
    """The status codes of the answers in ``received``, in order."""
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", received)


def test_pipelined_requests_are_answered_in_order(served: tuple[int, str]) -> None:
    port, _ = served
    get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    missing = b"GET /no-such-path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert _statuses(_raw(port, b"\r\n" + get + missing)) == [b"200", b"404"]


def test_a_chunked_referral_is_taken_whole(served: tuple[int, str]) -> None:
    port, key = served
    chunks = b"".join(
        b"%x;ext=1\r\n%s\r\n" % (len(REFERRAL[i : i + 700]), REFERRAL[i : i + 700])
        for i in range(0, len(REFERRAL), 700)
    )
    head = (
        b"POST /fhir/ServiceRequest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + key.encode()
        + b"\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n"
    )
    assert _statuses(_raw(port, head + chunks + b"0\r\nX-Trailer: 1\r\n\r\n")) in (
        [b"201"],
        [b"200"],
    )


def test_expect_100_continue_gets_one_interim_answer_then_the_answer(
    served: tuple[int, str],
) -> None:
    port, key = served
    head = (
        b"POST /fhir/ServiceRequest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + key.encode()
        + b"\r\nContent-Type: application/fhir+json\r\nExpect: 100-continue\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(REFERRAL)
    )
    received = _raw(port, head, then=REFERRAL)
    assert received.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert _statuses(received)[0] == b"100"
    assert _statuses(received)[1:] in ([b"201"], [b"200"])


def test_framing_that_cannot_be_trusted_is_refused_and_closed(served: tuple[int, str]) -> None:
    port, _ = served
    two_lengths = (
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    )
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    both = (
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
    )
    for request in (two_lengths, both):
        assert _statuses(_raw(port, request)) == [b"400"]  # and closed: _raw returned
