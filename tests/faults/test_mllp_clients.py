"""Misbehaving MLLP clients against the real ``gateway mllp`` process, over real sockets.

Tricklers (a byte a second, inside or outside a frame) must not keep slots from real
senders; connections over the limits must read an AR before the close, never a reset; a
frame that never ends is answered and closed at the frame timeout. Timeouts are scaled down
by settings so that each test takes seconds. Clients from several addresses bind to
127.0.0.2 and up (all of 127/8 is loopback on Linux).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures" / "gp-v2" / "01-new-referral.hl7"
GATEWAY = Path(sys.executable).parent / "gateway"
SB, TRAILER = b"\x0b", b"\x1c\x0d"
WAIT = 10.0
BUSY = b"the gateway is busy"

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="binds 127.0.0.x sources")


def message(control_id: str) -> bytes:
    """gp-v2's new referral with its own MSH-10 and referral id (so each is a new one)."""
    raw = FIXTURE.read_bytes()
    return raw.replace(b"|GP0001|", f"|{control_id}|".encode()).replace(
        b"|GPREF1001^", f"|REF-{control_id}^".encode()
    )


def msa(ack: bytes) -> tuple[str, str]:
    """(MSA-1, MSA-2) of a framed or unframed ACK."""
    for segment in ack.strip(SB + TRAILER).split(b"\r"):
        if segment.startswith(b"MSA|"):
            fields = segment.decode().split("|")
            return fields[1], (fields[2] if len(fields) > 2 else "")
    raise AssertionError(f"no MSA in {ack[:200]!r}")


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A TCP connection to the listener from ``source``."""
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT, source_address=(source, 0))


def read_to_close(sock: socket.socket) -> bytes:
    """All the server sends until it closes; a reset raises ConnectionResetError."""
    sock.settimeout(WAIT)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def read_ack(sock: socket.socket) -> bytes:
    """One framed answer (without waiting for the close)."""
    sock.settimeout(WAIT)
    data = b""
    while not data.endswith(TRAILER):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(data)} bytes, before an ACK"
        data += chunk
    return data


@dataclass
class Listener:
    """A running ``gateway mllp`` for gp-v2 and its log."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def log_text(self) -> str:
        """The server's log so far."""
        return self.log.read_text(errors="replace")


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Callable[..., Listener]]:
    """Start ``gateway mllp`` with GATEWAY_* settings as keywords; SIGTERM it afterwards."""
    started: list[Listener] = []

    def start(**settings: int) -> Listener:
        port = free_port()
        env = {
            **os.environ,
            "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / f'mllp{len(started)}.db'}",
            "GATEWAY_LOG_LEVEL": "INFO",
            **{f"GATEWAY_{name}": str(value) for name, value in settings.items()},
        }
        log = tmp_path / f"mllp{len(started)}.log"
        argv = [str(GATEWAY), "mllp", "--listen", f"gp-v2={port}", "--host", "127.0.0.1"]
        with log.open("wb") as out:
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        started.append(Listener(process, port, log))
        deadline = time.monotonic() + 30
        while "MLLP for gp-v2 on" not in started[-1].log_text():
            assert process.poll() is None, started[-1].log_text()
            assert time.monotonic() < deadline, "the listener did not start"
            time.sleep(0.05)
        return started[-1]

    yield start
    for item in started:
        item.process.send_signal(signal.SIGTERM)
        try:
            item.process.wait(20)
        except subprocess.TimeoutExpired:  # pragma: no cover - only when shutdown hangs
            item.process.kill()
            item.process.wait()


@dataclass
class Trickler:
    """A connection that sends one byte a second and never completes a frame."""

    sock: socket.socket
    byte: bytes
    received: bytes = b""
    closed_after: float | None = None
    reset: bool = False


@dataclass
class Trickle:
    """Drives tricklers from one thread until the server has closed every one of them."""

    tricklers: list[Trickler]
    interval: float = 1.0
    started: float = field(default_factory=time.monotonic)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Send each open trickler a byte every ``interval``; note what comes back."""
        with selectors.DefaultSelector() as selector:
            for item in self.tricklers:
                item.sock.setblocking(False)
                selector.register(item.sock, selectors.EVENT_READ, item)
            next_send = time.monotonic()
            while selector.get_map() and not self.stop.is_set():
                now = time.monotonic()
                if now >= next_send:
                    for key in list(selector.get_map().values()):
                        item = key.data
                        with contextlib.suppress(OSError):  # closed: the read below sees it
                            item.sock.send(item.byte)
                    next_send = now + self.interval
                for key, _ in selector.select(max(0.0, next_send - time.monotonic())):
                    item = key.data
                    try:
                        chunk = item.sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        item.reset, chunk = True, b""
                    item.received += chunk
                    if not chunk:
                        item.closed_after = time.monotonic() - self.started
                        selector.unregister(item.sock)
                        item.sock.close()


def test_64_tricklers_leave_a_real_sender_answered_aa(
    listener: Callable[..., Listener],
) -> None:
    server = listener(MLLP_IDLE_TIMEOUT=3, MLLP_FRAME_TIMEOUT=2, MLLP_MAX_CONNECTIONS=64)
    tricklers = []
    for n in range(64):  # 16 from each of 4 addresses: the per-source limit is 16
        sock = connect(server.port, f"127.0.0.{2 + n % 4}")
        if n % 2:
            sock.sendall(SB + b"MSH|")  # a frame begun, then one byte a second inside it
            tricklers.append(Trickler(sock, b"X"))
        else:
            tricklers.append(Trickler(sock, b"\n"))  # a newline a second, outside any frame
    trickle = Trickle(tricklers)
    thread = threading.Thread(target=trickle.run, daemon=True)
    thread.start()
    codes: list[str] = []
    answered_aa_after = None
    try:
        n = 0
        while time.monotonic() - trickle.started < 12:
            n += 1
            with connect(server.port) as sock:
                sock.sendall(SB + message(f"REAL{n}") + TRAILER)
                ack = read_ack(sock)
                code, control_id = msa(ack)
                assert control_id == f"REAL{n}"
                codes.append(code)
                if code == "AA":
                    answered_aa_after = time.monotonic() - trickle.started
                    break
                assert code == "AR" and BUSY in ack
                assert read_to_close(sock) == b""  # then a close, not a reset
            time.sleep(0.25)
    finally:
        thread.join(WAIT)
        trickle.stop.set()
    assert codes[0] == "AR", "the tricklers did not hold every slot at first"
    assert answered_aa_after is not None, f"no AA in 12 s while trickled: {codes}"
    assert answered_aa_after < 6
    assert all(t.closed_after is not None and t.closed_after < 6 for t in tricklers)
    in_frame = tricklers[1::2]
    assert all(msa(t.received)[0] == "AR" for t in in_frame)  # answered at the frame timeout
    assert all(t.closed_after is not None and t.closed_after < 4 for t in in_frame)
    assert all(t.received == b"" for t in tricklers[::2])  # no frame, nothing to answer


def test_connections_over_the_limit_read_an_ar_then_a_close_never_a_reset(
    listener: Callable[..., Listener],
) -> None:
    server = listener(MLLP_IDLE_TIMEOUT=30)
    held = [connect(server.port, f"127.0.0.{2 + n % 4}") for n in range(64)]
    try:
        for n, sock in enumerate(held):
            sock.sendall(SB + message(f"HELD{n}") + TRAILER)
            assert msa(read_ack(sock)) == ("AA", f"HELD{n}")
        extras = [connect(server.port, f"127.0.0.{10 + n % 8}") for n in range(200)]
        for n, sock in enumerate(extras):
            if n % 10:  # most send a frame at once; every tenth sends nothing
                sock.sendall(SB + message(f"OVER{n}") + TRAILER)
        echoed = 0
        for n, sock in enumerate(extras):
            with sock:
                answer = read_to_close(sock)  # ConnectionResetError fails the test
            code, control_id = msa(answer)
            assert code == "AR" and BUSY in answer
            assert control_id in ("", f"OVER{n}") and not (control_id and n % 10 == 0)
            echoed += bool(control_id)
        assert echoed >= 100  # queued rejections read the frame and echo its MSH-10
        held[0].sendall(SB + message("STILL") + TRAILER)
        assert msa(read_ack(held[0])) == ("AA", "STILL")
    finally:
        for sock in held:
            sock.close()
    assert "Ellis" not in server.log_text() and "9990000018" not in server.log_text()


def test_a_frame_that_never_ends_is_answered_and_closed_at_the_frame_timeout(
    listener: Callable[..., Listener],
) -> None:
    server = listener(MLLP_IDLE_TIMEOUT=20, MLLP_FRAME_TIMEOUT=1)
    raw = message("NEVEREND")
    with connect(server.port) as sock:
        sock.sendall(SB + raw[: raw.index(b"\rPRD")])  # MSH and RF1 whole, then nothing
        started = time.monotonic()
        answer = read_to_close(sock)
        waited = time.monotonic() - started
    assert 0.9 <= waited < 3
    assert msa(answer) == ("AR", "NEVEREND")
    assert b"frame timeout" in answer
    with connect(server.port) as sock:  # the listener goes on
        sock.sendall(SB + message("AFTER") + TRAILER)
        assert msa(read_ack(sock)) == ("AA", "AFTER")


def test_the_per_source_limit_answers_ar_to_that_address_only(
    listener: Callable[..., Listener],
) -> None:
    server = listener(MLLP_MAX_CONNECTIONS_PER_SOURCE=3)
    held = [connect(server.port) for _ in range(3)]
    try:
        for n, sock in enumerate(held):
            sock.sendall(SB + message(f"MINE{n}") + TRAILER)
            assert msa(read_ack(sock)) == ("AA", f"MINE{n}")
        with connect(server.port) as fourth:
            fourth.sendall(SB + message("MINE3") + TRAILER)
            answer = read_to_close(fourth)
        assert msa(answer) == ("AR", "MINE3")
        assert b"limit per source" in answer
        with connect(server.port, "127.0.0.2") as other:
            other.sendall(SB + message("THEIRS") + TRAILER)
            assert msa(read_ack(other)) == ("AA", "THEIRS")
        held.pop().close()
        deadline = time.monotonic() + WAIT
        while True:  # the slot comes back once the server has seen the close
            with connect(server.port) as again:
                again.sendall(SB + message(f"AGAIN{len(held)}") + TRAILER)
                code, _ = msa(read_ack(again))
            if code == "AA" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert code == "AA"
    finally:
        for sock in held:
            sock.close()
