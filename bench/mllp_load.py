"""MLLP load generator, run as its own process so that it does not share the server's GIL.

``python bench/mllp_load.py --port P --template FILE --run N`` opens ``--connections``
sockets to 127.0.0.1:P. Each sends one framed message (0x0B message 0x1C 0x0D), waits for
its ACK and only then sends the next, first ``--warm-up`` messages per connection untimed,
then for ``--seconds``. Every message is new: MSH-10 and RF1-6 come from v2_payload.fill.
One thread drives every connection with a selector, so the generator adds no GIL hand-offs
of its own to the latencies. It prints one JSON line: counts of ACK codes (warm-up and
timed), latency percentiles of the timed messages, and the first ACK that was not AA.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from v2_payload import fill, ids

HOST = "127.0.0.1"
START_BLOCK = b"\x0b"
TRAILER = b"\x1c\x0d"
ACK_TIMEOUT = 30.0


@dataclass
class _Conn:
    """One connection: the message in flight and the bytes of its ACK received so far."""

    number: int
    sock: socket.socket
    counter: int = 0
    control_id: str = ""
    sent_at: float = 0.0
    waiting: bool = False
    buf: bytearray = field(default_factory=bytearray)


@dataclass
class _Tally:
    """What one phase (warm-up or timed) saw."""

    codes: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    wrong_control_id: int = 0
    first_bad: str = ""
    started: float = 0.0
    ended: float = 0.0


def ack_fields(ack: bytes) -> tuple[str, str]:
    """(MSA-1, MSA-2) of an ACK; ('?', '') when it has no MSA segment."""
    for segment in ack.replace(b"\n", b"\r").split(b"\r"):
        if segment.startswith(b"MSA|"):
            parts = segment.split(b"|")
            code = parts[1].decode("ascii", "replace") if len(parts) > 1 else "?"
            control = parts[2].split(b"^")[0] if len(parts) > 2 else b""
            return code or "?", control.decode("ascii", "replace")
    return "?", ""


class Driver:
    """Sends messages one at a time per connection and collects the ACKs."""

    def __init__(self, port: int, template: bytes, run: int, connections: int, check_id: bool):
        self.template, self.run, self.check_id = template, run, check_id
        self.selector = selectors.DefaultSelector()
        self.conns: list[_Conn] = []
        for number in range(1, connections + 1):
            sock = socket.create_connection((HOST, port), timeout=ACK_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(number, sock)
            self.conns.append(conn)
            self.selector.register(sock, selectors.EVENT_READ, conn)

    def _send(self, conn: _Conn) -> None:
        conn.counter += 1
        conn.control_id = ids(self.run, conn.number, conn.counter)[0]
        frame = START_BLOCK + fill(self.template, self.run, conn.number, conn.counter) + TRAILER
        conn.sent_at = time.perf_counter()
        conn.sock.sendall(frame)
        conn.waiting = True

    def phase(self, tally: _Tally, *, per_conn: int = 0, until: float = 0.0) -> None:
        """Drive every connection until each has sent ``per_conn`` messages, or until the
        clock passes ``until``; either way wait for the last ACK on each connection."""
        quota = {c.number: per_conn for c in self.conns}

        def take(conn: _Conn) -> bool:
            """Whether ``conn`` sends another message in this phase."""
            if not per_conn:
                return time.perf_counter() < until
            if quota[conn.number] <= 0:
                return False
            quota[conn.number] -= 1
            return True

        tally.started = time.perf_counter()
        for conn in self.conns:
            if take(conn):
                self._send(conn)
        while any(c.waiting for c in self.conns):
            events = self.selector.select(timeout=ACK_TIMEOUT)
            if not events:
                raise SystemExit(f"no ACK within {ACK_TIMEOUT:g} s")
            for key, _ in events:
                ready: _Conn = key.data
                if self._receive(ready, tally) and take(ready):
                    self._send(ready)
        tally.ended = time.perf_counter()

    def _receive(self, conn: _Conn, tally: _Tally) -> bool:
        """Read from a ready connection; True once its ACK is whole (and tallied)."""
        data = conn.sock.recv(65536)
        if not data:
            raise SystemExit(f"connection {conn.number} closed by the server")
        conn.buf += data
        end = conn.buf.find(TRAILER)
        if end < 0:
            return False
        now = time.perf_counter()
        ack = bytes(conn.buf[:end]).lstrip(START_BLOCK)
        del conn.buf[: end + 2]
        if not conn.waiting or conn.buf.strip():
            raise SystemExit(f"connection {conn.number}: an ACK nobody asked for")
        conn.waiting = False
        tally.latencies.append(now - conn.sent_at)
        code, control_id = ack_fields(ack)
        tally.codes[code] = tally.codes.get(code, 0) + 1
        wrong_id = self.check_id and control_id != conn.control_id
        tally.wrong_control_id += int(wrong_id)
        if (code != "AA" or wrong_id) and not tally.first_bad:
            tally.first_bad = f"sent {conn.control_id}, got {ack.decode('utf-8', 'replace')!r}"
        return True

    def close(self) -> None:
        for conn in self.conns:
            self.selector.unregister(conn.sock)
            conn.sock.close()
        self.selector.close()


def percentile(ordered: list[float], pct: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def summary(warm: _Tally, timed: _Tally, connections: int) -> dict[str, Any]:
    """The JSON-ready result of one load run (latencies in ms)."""
    ms = sorted(x * 1e3 for x in timed.latencies)
    seconds = timed.ended - timed.started
    return {
        "connections": connections,
        "seconds": seconds,
        "messages": len(ms),
        "per_second": len(ms) / seconds if seconds else 0.0,
        "codes": timed.codes,
        "warm_up_messages": len(warm.latencies),
        "warm_up_codes": warm.codes,
        "wrong_control_id": warm.wrong_control_id + timed.wrong_control_id,
        "mean_ms": sum(ms) / len(ms) if ms else 0.0,
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": ms[-1] if ms else 0.0,
        "first_bad": warm.first_bad or timed.first_bad,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--template", type=Path, required=True, help="v2_payload template")
    parser.add_argument("--run", type=int, required=True, help="run tag, part of every id")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warm-up", type=int, default=10, help="untimed messages per conn")
    parser.add_argument(
        "--check-control-id", action="store_true", help="MSA-2 must echo each MSH-10"
    )
    args = parser.parse_args(argv)
    driver = Driver(
        args.port, args.template.read_bytes(), args.run, args.connections, args.check_control_id
    )
    warm, timed = _Tally(), _Tally()
    try:
        if args.warm_up:
            driver.phase(warm, per_conn=args.warm_up)
        driver.phase(timed, until=time.perf_counter() + args.seconds)
    finally:
        driver.close()
    print(json.dumps(summary(warm, timed, args.connections)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
