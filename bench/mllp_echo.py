"""The MLLP baseline: stores each framed message durably, answers a fixed AA, nothing more.

``python bench/mllp_echo.py --port P --db FILE``. One thread per connection, as the gateway's
listener. Each frame is INSERTed raw into SQLite with the gateway's durability (WAL,
synchronous=FULL, BEGIN IMMEDIATE, one commit per message; baseline_app.connect), then
answered with the same AA ACK every time: no parsing, mapping, validation, de-duplication or
ORM. Writers queue on one lock, as the gateway's writers queue on its lock file, so none
sleeps in SQLite's busy handler. SIGTERM stops it once the open connections are finished.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sqlite3
import sys
import threading
import time

from baseline_app import connect, create_schema

HOST = "127.0.0.1"
START_BLOCK = b"\x0b"
TRAILER = b"\x1c\x0d"
ACK = START_BLOCK + b"MSH|^~\\&|ECHO|BENCH|||20260101000000||ACK|1|P|2.5.1\rMSA|AA|\r" + TRAILER

_write_lock = threading.Lock()


def store(conn: sqlite3.Connection, message: bytes) -> None:
    """INSERT and commit one message before it is acknowledged."""
    with _write_lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO referrals (received_at, body) VALUES (?, ?)", (time.time(), message)
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def serve(sock: socket.socket, db: str) -> None:
    """Answer every frame on one connection until the peer closes it."""
    conn = connect(db)
    buf = bytearray()
    try:
        with sock:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
                while (end := buf.find(TRAILER)) >= 0:
                    start = buf.find(START_BLOCK)
                    message = bytes(buf[start + 1 : end])
                    del buf[: end + 2]
                    store(conn, message)
                    sock.sendall(ACK)
    except OSError:
        return
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True, help="SQLite file (created if missing)")
    args = parser.parse_args(argv)
    create_schema(args.db)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    listener = socket.create_server((HOST, args.port), reuse_port=False, backlog=128)
    listener.settimeout(0.1)
    threads: list[tuple[threading.Thread, socket.socket]] = []
    with listener:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=serve, args=(sock, args.db), daemon=True)
            thread.start()
            threads.append((thread, sock))
    for thread, sock in threads:  # finish the frame in hand, then stop reading
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)
        thread.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
