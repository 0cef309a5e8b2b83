"""The MLLP listener, driven by a real MLLP client (python-hl7) and raw sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hl7.client import MLLPClient

from gateway.errors import GatewayError, StoreUnavailable
from gateway.hl7v2.ack import build_ack
from gateway.hl7v2.er7 import parse
from gateway.hl7v2.framing import minimal_ack, msa_code
from gateway.hl7v2.mllp import FrameTooLarge, MllpServer

SB, TRAILER = b"\x0b", b"\x1c\x0d"
WAIT = 5.0  # upper bound on any single wait in these tests


def message(control_id: str, name: str = "SMITH^JOHN") -> bytes:
    """A small REF^I12 whose MSH-10 is ``control_id``."""
    return (
        "\r".join(
            [
                "MSH|^~\\&|EMIS|PRACTICE|SPGW|SP-GATEWAY|20240101120000||REF^I12^REF_I12|"
                f"{control_id}|P|2.5.1",
                f"PID|1||9434765919^^^NHS^NH||{name}||19800101|M",
                "RF1|1|A|SOCIAL||",
            ]
        )
        + "\r"
    ).encode()


def frame(raw: bytes) -> bytes:
    """``raw`` in MLLP framing."""
    return SB + raw + TRAILER


def handler(raw: bytes) -> bytes:
    """The intake stand-in: AA for parseable HL7, AE/AR naming the problem otherwise."""
    try:
        parsed = parse(raw)
    except GatewayError as exc:
        return build_ack(None, exc)
    return build_ack(parsed)


def fallback(raw: bytes | None, error: BaseException | str) -> bytes:
    """AR (transient), echoing MSH-10 when the bytes parse."""
    try:
        parsed = parse(raw) if raw else None
    except GatewayError:
        parsed = None
    text = error if isinstance(error, str) else type(error).__name__
    return build_ack(parsed, StoreUnavailable(text))


def msa(ack: bytes) -> tuple[str, str]:
    """(MSA-1, MSA-2) of an ACK."""
    parsed = parse(ack)
    return parsed.value("MSA", 1), parsed.value("MSA", 2)


def read_frames(sock: socket.socket, count: int) -> list[bytes]:
    """Read exactly ``count`` framed answers (unframed); fails if the server closes first."""
    sock.settimeout(WAIT)
    buf = b""
    while buf.count(TRAILER) < count:
        data = sock.recv(65536)
        assert data, f"connection closed after {buf.count(TRAILER)} of {count} answers"
        buf += data
    frames = buf.split(TRAILER)
    assert frames[-1] == b"", "more bytes than the expected answers"
    assert all(f.startswith(SB) for f in frames[:-1])
    return [f[1:] for f in frames[:-1]]


def assert_closed(sock: socket.socket) -> None:
    """The server closed the connection and sent nothing more."""
    sock.settimeout(WAIT)
    assert sock.recv(65536) == b""


def exchange(client: MLLPClient, raw: bytes) -> bytes:
    """Send one message with the MLLP client and return its ACK (unframed)."""
    answer = client.send_message(raw)
    data = answer.encode() if isinstance(answer, str) else bytes(answer)
    while not data.endswith(TRAILER):
        more = client.socket.recv(65536)
        assert more, "connection closed before the ACK was complete"
        data += more
    assert data.startswith(SB)
    return data[1 : -len(TRAILER)]


def connect(server: MllpServer) -> MLLPClient:
    """An MLLP client whose reads give up after WAIT seconds."""
    client = MLLPClient(*server.address)
    client.socket.settimeout(WAIT)
    return client


def raw_socket(server: MllpServer) -> socket.socket:
    """A plain TCP connection to the server."""
    sock = socket.create_connection(server.address, timeout=WAIT)
    return sock


def wait_for(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds (at most WAIT seconds)."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def serve() -> Iterator[Callable[..., MllpServer]]:
    """Start servers on ephemeral ports; shut each down (bounded) after the test."""
    started: list[tuple[MllpServer, threading.Thread]] = []

    def start(
        handle: Callable[[bytes], bytes] = handler,
        fall_back: Callable[[bytes | None, BaseException | str], bytes] = fallback,
        **options: Any,
    ) -> MllpServer:
        server = MllpServer("127.0.0.1", 0, handle, fallback=fall_back, **options)
        started.append((server, server.start_in_thread()))
        return server

    yield start
    for server, thread in started:
        server.shutdown(timeout=WAIT)
        thread.join(WAIT)
        assert not thread.is_alive()


def test_address_reports_the_ephemeral_port(serve: Callable[..., MllpServer]) -> None:
    server = serve()
    host, port = server.address
    assert host == "127.0.0.1"
    assert port > 0


def test_one_message_gets_aa_echoing_msh10(serve: Callable[..., MllpServer]) -> None:
    server = serve()
    with connect(server) as client:
        ack = exchange(client, message("MSG00001"))
    assert msa(ack) == ("AA", "MSG00001")
    assert ack.startswith(b"MSH|^~\\&|SPGW|SP-GATEWAY|EMIS|PRACTICE|")


def test_fifty_messages_on_one_connection(serve: Callable[..., MllpServer]) -> None:
    server = serve()
    with connect(server) as client:
        for n in range(50):
            assert msa(exchange(client, message(f"ONE{n:04d}"))) == ("AA", f"ONE{n:04d}")


def test_concurrent_connections_each_ack_matches_its_message(
    serve: Callable[..., MllpServer],
) -> None:
    received: list[bytes] = []
    lock = threading.Lock()

    def recording(raw: bytes) -> bytes:
        with lock:
            received.append(raw)
        return handler(raw)

    server = serve(recording)
    results: dict[int, list[tuple[str, str, str]]] = {}
    errors: list[BaseException] = []

    def sender(index: int) -> None:
        try:
            with connect(server) as client:
                answers = []
                for n in range(25):
                    control_id = f"C{index}-{n:03d}"
                    code, echoed = msa(exchange(client, message(control_id)))
                    answers.append((control_id, code, echoed))
                results[index] = answers
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
        assert not thread.is_alive()
    assert not errors
    assert sorted(results) == list(range(8))
    for answers in results.values():
        assert len(answers) == 25
        assert all(code == "AA" and echoed == sent for sent, code, echoed in answers)
    assert len(received) == 200


def test_pipelined_frames_are_answered_in_order(serve: Callable[..., MllpServer]) -> None:
    server = serve()
    ids = [f"PIPE{n:03d}" for n in range(20)]
    with raw_socket(server) as sock:
        sock.sendall(b"".join(frame(message(i)) for i in ids))
        answers = read_frames(sock, len(ids))
    assert [msa(a) for a in answers] == [("AA", i) for i in ids]


def test_frames_split_across_writes_and_large_messages(serve: Callable[..., MllpServer]) -> None:
    received: list[bytes] = []

    def recording(raw: bytes) -> bytes:
        received.append(raw)
        return handler(raw)

    server = serve(recording)
    # 300 kB in NTE segments of 50 kB each (a field stays under the 64 KiB field limit).
    notes = b"".join(b"NTE|%d||" % i + b"X" * 50_000 + b"\r" for i in range(1, 7))
    big = message("BIG0001") + notes
    small = message("DRIP001")
    with raw_socket(server) as sock:
        data = frame(small)
        for cut in range(0, len(data), 7):  # dribbled, the trailer split across writes
            sock.sendall(data[cut : cut + 7])
            time.sleep(0.001)
        sock.sendall(frame(big))
        answers = read_frames(sock, 2)
    assert [msa(a) for a in answers] == [("AA", "DRIP001"), ("AA", "BIG0001")]
    assert received == [small, big]


def test_handler_exception_is_answered_by_the_fallback(serve: Callable[..., MllpServer]) -> None:
    calls: list[tuple[bytes | None, BaseException | str]] = []

    def flaky(raw: bytes) -> bytes:
        if b"|BOOM|" in raw:
            raise RuntimeError("store exploded")
        return handler(raw)

    def recording_fallback(raw: bytes | None, error: BaseException | str) -> bytes:
        calls.append((raw, error))
        return fallback(raw, error)

    server = serve(flaky, recording_fallback)
    with connect(server) as client:
        assert msa(exchange(client, message("BOOM"))) == ("AR", "BOOM")
        assert msa(exchange(client, message("AFTER01"))) == ("AA", "AFTER01")
    assert len(calls) == 1
    assert calls[0][0] == message("BOOM")
    assert isinstance(calls[0][1], RuntimeError)


def test_handler_returning_nothing_is_answered_by_the_fallback(
    serve: Callable[..., MllpServer],
) -> None:
    server = serve(lambda raw: b"")
    with connect(server) as client:
        assert msa(exchange(client, message("EMPTY01"))) == ("AR", "EMPTY01")


def test_fallback_failing_too_gives_the_minimal_ack(serve: Callable[..., MllpServer]) -> None:
    def broken_handler(raw: bytes) -> bytes:
        raise ValueError("no")

    def broken_fallback(raw: bytes | None, error: BaseException | str) -> bytes:
        raise KeyError("neither")

    server = serve(broken_handler, broken_fallback)
    with connect(server) as client:
        first = exchange(client, message("BOTH001"))
        second = exchange(client, message("BOTH002"))
    assert first.startswith(b"MSH|^~\\&|SPGW|SP-GATEWAY|||")
    assert b"||ACK|" in first and first.endswith(b"|P|2.5.1\rMSA|AR|BOTH001\r")
    assert msa(first) == ("AR", "BOTH001")
    assert msa(second) == ("AR", "BOTH002")


def test_garbage_before_a_frame_is_skipped(serve: Callable[..., MllpServer]) -> None:
    received: list[bytes] = []

    def recording(raw: bytes) -> bytes:
        received.append(raw)
        return handler(raw)

    server = serve(recording)
    with raw_socket(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\x00\xff\xfe" + frame(message("AFTERJUNK")))
        sock.sendall(b"\r\n  " + frame(message("AFTERWS")))  # whitespace between frames
        answers = read_frames(sock, 2)
    assert [msa(a) for a in answers] == [("AA", "AFTERJUNK"), ("AA", "AFTERWS")]
    assert received == [message("AFTERJUNK"), message("AFTERWS")]


def test_a_frame_of_binary_garbage_is_handed_over_and_answered(
    serve: Callable[..., MllpServer],
) -> None:
    received: list[bytes] = []

    def recording(raw: bytes) -> bytes:
        received.append(raw)
        return handler(raw)

    junk = bytes(range(256)).replace(b"\x1c", b"") * 4
    server = serve(recording)
    with raw_socket(server) as sock:
        sock.sendall(frame(junk) + frame(b"") + frame(message("NEXT001")))
        answers = read_frames(sock, 3)
    # Neither is an HL7 v2 message (no MSH): AR, as for any text that is not HL7 v2.
    assert [msa_code(a) for a in answers] == ["AR", "AR", "AA"]
    assert received == [junk, b"", message("NEXT001")]


def test_oversize_frame_is_answered_then_dropped_and_the_connection_goes_on(
    serve: Callable[..., MllpServer],
) -> None:
    calls: list[tuple[bytes | None, BaseException | str]] = []

    def recording_fallback(raw: bytes | None, error: BaseException | str) -> bytes:
        calls.append((raw, error))
        return fallback(raw, error)

    server = serve(fall_back=recording_fallback, max_frame_bytes=1024)
    huge = message("HUGE001", name="Y" * 4000)
    with raw_socket(server) as sock:
        sock.sendall(frame(message("FITS001")) + frame(huge) + frame(message("AFTER01")))
        first, second, third = read_frames(sock, 3)
    assert msa(first) == ("AA", "FITS001")
    assert msa(second) == ("AR", "HUGE001")  # this fallback answers AR; the gateway's AE
    assert msa(third) == ("AA", "AFTER01")
    assert len(calls) == 1
    prefix, error = calls[0]
    assert prefix == huge  # all of it: under the 64 KiB kept of an oversize frame
    assert isinstance(error, FrameTooLarge) and error.limit == 1024


def test_oversize_frame_without_trailer_is_answered_early_and_skipped_to_its_end(
    serve: Callable[..., MllpServer],
) -> None:
    answers: list[int] = []

    def oversize(prefix: bytes, seen: int) -> bytes:
        answers.append(seen)
        return handler(b"MSH|^~\\&|A|B|C|D|20260101||ACK|X|P|2.5.1\r")

    server = serve(max_frame_bytes=1024, idle_timeout=30.0, oversize=oversize)
    with raw_socket(server) as sock:
        sock.sendall(SB + b"Z" * 5000)  # no trailer yet: must not wait for it
        started = time.monotonic()
        (answer,) = read_frames(sock, 1)
        assert time.monotonic() - started < 2.0
        sock.sendall(b"Z" * 100_000)  # the rest of the frame, dropped as it comes
        sock.sendall(b"Z\x1c")
        time.sleep(0.05)
        sock.sendall(b"\r" + frame(message("NEXT001")))  # trailer split across writes
        (after,) = read_frames(sock, 1)
    assert msa(answer) == ("AA", "X")
    assert msa(after) == ("AA", "NEXT001")
    assert len(answers) == 1 and answers[0] > 1024


def test_unterminated_frame_is_answered_after_the_idle_timeout(
    serve: Callable[..., MllpServer],
) -> None:
    calls: list[tuple[bytes | None, BaseException | str]] = []

    def recording_fallback(raw: bytes | None, error: BaseException | str) -> bytes:
        calls.append((raw, error))
        return fallback(raw, error)

    server = serve(fall_back=recording_fallback, idle_timeout=0.5)
    with raw_socket(server) as sock:
        sock.sendall(SB + message("NOEND01"))
        started = time.monotonic()
        (answer,) = read_frames(sock, 1)
        waited = time.monotonic() - started
        assert_closed(sock)
    assert 0.4 <= waited < 3.0
    assert msa(answer) == ("AR", "NOEND01")
    assert calls == [
        (message("NOEND01"), "frame not terminated (no 0x1C 0x0D) before the idle timeout")
    ]


def test_idle_connection_is_closed_without_a_byte(serve: Callable[..., MllpServer]) -> None:
    server = serve(idle_timeout=0.5)
    with connect(server) as client:
        assert msa(exchange(client, message("BEFOREIDLE"))) == ("AA", "BEFOREIDLE")
        started = time.monotonic()
        assert_closed(client.socket)
        assert 0.4 <= time.monotonic() - started < 3.0
    with raw_socket(server) as sock:
        assert_closed(sock)
    wait_for(lambda: server.active_connections() == 0)


def test_peer_closing_mid_frame_is_dropped(
    serve: Callable[..., MllpServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.hl7v2.mllp")
    called: list[bytes] = []

    def recording(raw: bytes) -> bytes:
        called.append(raw)
        return handler(raw)

    server = serve(recording)
    with raw_socket(server) as sock:
        sock.sendall(SB + message("HALF001")[:40])
    wait_for(lambda: "peer closed mid-frame" in caplog.text)
    assert called == []
    with connect(server) as client:
        assert msa(exchange(client, message("STILLUP"))) == ("AA", "STILLUP")


def test_connections_over_the_limit_get_ar_then_close(serve: Callable[..., MllpServer]) -> None:
    server = serve(max_connections=2)
    first, second = connect(server), connect(server)
    try:
        assert msa(exchange(first, message("SLOT1"))) == ("AA", "SLOT1")
        assert msa(exchange(second, message("SLOT2"))) == ("AA", "SLOT2")
        with raw_socket(server) as extra:
            extra.sendall(frame(message("EXTRA01")))
            (answer,) = read_frames(extra, 1)
            assert_closed(extra)
        assert msa(answer) == ("AR", "EXTRA01")
        assert msa(exchange(second, message("SLOT2B"))) == ("AA", "SLOT2B")
        first.close()
        wait_for(lambda: server.active_connections() < 2)
        with connect(server) as third:
            assert msa(exchange(third, message("SLOT3"))) == ("AA", "SLOT3")
    finally:
        first.close()
        second.close()


def test_shutdown_with_a_client_connected_does_not_hang() -> None:
    server = MllpServer("127.0.0.1", 0, handler, fallback=fallback, idle_timeout=60.0)
    thread = server.start_in_thread()
    with connect(server) as client:
        assert msa(exchange(client, message("BEFORESTOP"))) == ("AA", "BEFORESTOP")
        started = time.monotonic()
        server.shutdown(timeout=WAIT)
        thread.join(WAIT)
        assert not thread.is_alive()
        assert time.monotonic() - started < 2.0
        assert_closed(client.socket)
    with pytest.raises(OSError):
        socket.create_connection(server.address, timeout=1.0)
    server.shutdown()  # a second call is harmless


def test_shutdown_lets_an_in_flight_handler_finish() -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(raw: bytes) -> bytes:
        entered.set()
        release.wait(WAIT)
        return handler(raw)

    server = MllpServer("127.0.0.1", 0, slow, fallback=fallback)
    thread = server.start_in_thread()
    with raw_socket(server) as sock:
        sock.sendall(frame(message("INFLIGHT")))
        assert entered.wait(WAIT)
        stopper = threading.Thread(target=server.shutdown, kwargs={"timeout": WAIT})
        stopper.start()
        time.sleep(0.2)
        assert stopper.is_alive()  # waiting for the handler, not abandoning it
        release.set()
        stopper.join(WAIT)
        assert not stopper.is_alive()
        (answer,) = read_frames(sock, 1)
        assert_closed(sock)
    assert msa(answer) == ("AA", "INFLIGHT")
    thread.join(WAIT)
    assert not thread.is_alive()


def test_logs_carry_lengths_and_codes_but_no_content(
    serve: Callable[..., MllpServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.hl7v2.mllp")

    def leaky(raw: bytes) -> bytes:
        if b"|LEAK002|" in raw:
            raise RuntimeError(f"could not store {raw!r}")
        return handler(raw)

    server = serve(leaky)
    first, second = message("LEAK001", "SECRET^NAME"), message("LEAK002", "SECRET^NAME")
    with connect(server) as client:
        exchange(client, first)
        exchange(client, second)
    wait_for(lambda: "closed (peer closed)" in caplog.text)
    text = caplog.text
    assert f"frame of {len(first)} bytes answered AA" in text
    assert f"frame of {len(second)} bytes answered AR" in text
    assert "RuntimeError" in text
    for secret in ("SECRET", "9434765919", "LEAK00", "REF^I12"):
        assert secret not in text


def test_minimal_ack_and_msa_code() -> None:
    ack = minimal_ack(message("MIN0001"))
    assert msa(ack) == ("AR", "MIN0001")
    assert msa_code(ack) == "AR"
    assert msa(minimal_ack(None)) == ("AR", "")
    assert msa(minimal_ack(b"\x00\xff not hl7")) == ("AR", "")
    assert msa_code(b"MSH|^~\\&|X\rMSA|AE|1\r") == "AE"
    assert msa_code(b"junk") == "?"


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset fails the test)."""
    sock.settimeout(WAIT)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_bytes_outside_a_frame_do_not_hold_the_connection(
    serve: Callable[..., MllpServer],
) -> None:
    server = serve(idle_timeout=0.6)
    with raw_socket(server) as sock:
        started = time.monotonic()
        sock.settimeout(0.15)
        closed = False
        while not closed and time.monotonic() - started < WAIT:
            try:
                sock.sendall(b"\r\n")
                closed = sock.recv(65536) == b""
            except TimeoutError:
                continue
            except OSError:  # written after the close: the server has gone
                closed = True
        waited = time.monotonic() - started
    assert closed, "newlines every 0.15 s kept the connection open"
    assert 0.5 <= waited < 2.0
    wait_for(lambda: server.active_connections() == 0)


def test_a_complete_frame_restarts_the_idle_clock(serve: Callable[..., MllpServer]) -> None:
    server = serve(idle_timeout=0.6)
    with connect(server) as client:
        for n in range(6):  # 1.8 s in all, three idle timeouts, never 0.6 s without a frame
            assert msa(exchange(client, message(f"TICK{n}"))) == ("AA", f"TICK{n}")
            time.sleep(0.3)
        started = time.monotonic()
        assert_closed(client.socket)
        assert time.monotonic() - started < 0.6


def test_a_trickled_frame_is_answered_ar_and_closed_at_the_frame_timeout(
    serve: Callable[..., MllpServer],
) -> None:
    calls: list[tuple[bytes | None, BaseException | str]] = []

    def recording_fallback(raw: bytes | None, error: BaseException | str) -> bytes:
        calls.append((raw, error))
        return fallback(raw, error)

    server = serve(fall_back=recording_fallback, idle_timeout=30.0, frame_timeout=0.8)
    head = message("SLOW001")
    with raw_socket(server) as sock:
        sock.sendall(SB + head)
        started = time.monotonic()
        answer = b""
        sock.settimeout(0.1)
        while not answer.endswith(TRAILER) and time.monotonic() - started < WAIT:
            with contextlib.suppress(TimeoutError):
                sock.sendall(b"N")  # one byte of the frame every 0.1 s, never its end
                answer += sock.recv(65536)
        waited = time.monotonic() - started
        assert answer.startswith(SB) and answer.endswith(TRAILER), "no answer in time"
        assert read_to_close(sock) == b""
    assert 0.7 <= waited < 2.0
    assert msa(answer[1:-2]) == ("AR", "SLOW001")  # the MSH had arrived whole
    assert len(calls) == 1 and calls[0][1] == (
        "frame not terminated (no 0x1C 0x0D) within the 0.8 s frame timeout"
    )
    assert calls[0][0] is not None and calls[0][0].startswith(head)


def test_a_frame_cut_inside_its_msh_is_answered_without_a_control_id(
    serve: Callable[..., MllpServer],
) -> None:
    server = serve(frame_timeout=0.3)
    with raw_socket(server) as sock:
        sock.sendall(SB + message("CUTHERE")[:76])  # MSH-10 cut short: "CUTH"
        answer = read_to_close(sock)
    assert msa(answer[1:-2]) == ("AR", "")


def test_over_the_limit_without_a_frame_gets_a_busy_ar_without_control_id(
    serve: Callable[..., MllpServer],
) -> None:
    server = serve(max_connections=1, reject_wait=0.3)
    with connect(server) as held:
        assert msa(exchange(held, message("HOLD001"))) == ("AA", "HOLD001")
        with raw_socket(server) as extra:
            started = time.monotonic()
            answer = read_to_close(extra)
            waited = time.monotonic() - started
        assert 0.2 <= waited < 2.0
        assert msa(answer[1:-2]) == ("AR", "")
        assert b"the gateway is busy (all 1 MLLP connections are in use)" in answer
        assert msa(exchange(held, message("HOLD002"))) == ("AA", "HOLD002")


def test_a_flood_over_the_limit_is_answered_ar_never_reset(
    serve: Callable[..., MllpServer],
) -> None:
    server = serve(max_connections=2, max_rejections=3)
    held = [connect(server), connect(server)]
    try:
        for n, client in enumerate(held):
            assert msa(exchange(client, message(f"HELD{n}"))) == ("AA", f"HELD{n}")
        extras = [raw_socket(server) for _ in range(40)]
        for n, sock in enumerate(extras):
            sock.sendall(frame(message(f"FLOOD{n:02d}")))
        echoed = 0
        for n, sock in enumerate(extras):
            with sock:
                answer = read_to_close(sock)
            code, control_id = msa(answer[1:-2])
            assert code == "AR" and control_id in ("", f"FLOOD{n:02d}")
            echoed += control_id != ""
        assert echoed >= 3  # at least those queued read their frame and echoed its MSH-10
        assert server.active_connections() == 2
        assert msa(exchange(held[0], message("HELD2"))) == ("AA", "HELD2")
    finally:
        for client in held:
            client.close()


def test_the_per_source_limit_rejects_only_that_address(
    serve: Callable[..., MllpServer],
) -> None:
    server = serve(max_connections=10, max_per_source=2)
    held = [connect(server), connect(server)]
    try:
        for n, client in enumerate(held):
            assert msa(exchange(client, message(f"SRC{n}"))) == ("AA", f"SRC{n}")
        with raw_socket(server) as third:
            third.sendall(frame(message("SRC3")))
            answer = read_to_close(third)
        assert msa(answer[1:-2]) == ("AR", "SRC3")
        assert b"this address already holds 2 MLLP connections" in answer
        other = socket.create_connection(
            server.address, timeout=WAIT, source_address=("127.0.0.2", 0)
        )
        with other:
            other.sendall(frame(message("OTHER1")))
            (ok,) = read_frames(other, 1)
        assert msa(ok) == ("AA", "OTHER1")
        held[0].close()
        wait_for(lambda: server.active_connections() == 1)
        with connect(server) as again:
            assert msa(exchange(again, message("SRC4"))) == ("AA", "SRC4")
    finally:
        for client in held:
            client.close()
