"""A link-worker platform's webhook endpoint, run as its own process by the fault tests.

``python receiver.py PORT LOG [--delay SECONDS] [--hold FILE]``

Every POST is checked against the HMAC in ``X-Gateway-Signature`` (secret from the
FAULTS_WEBHOOK_SECRET environment variable; 401 when it does not match), then one line
``<unix time> <X-Gateway-Delivery> <envelope id> <envelope version>`` is appended to LOG
before the answer, so a receipt is on disk even if this process or the sender dies next.
While the file ``--hold`` names exists, answers wait (the delivery stays in flight); each
answer waits ``--delay`` seconds more. SIGTERM stops it gracefully: no new connections, the
requests in hand are answered first. It imports nothing from the gateway.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SECRET_ENV = "FAULTS_WEBHOOK_SECRET"
#: Longest an answer is held back by the hold file.
HOLD_LIMIT = 120.0


def signed(secret: bytes, timestamp: str, body: bytes, header: str) -> bool:
    """True when ``header`` is ``sha256=<HMAC of "<timestamp>.<body>">``."""
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header.encode(), f"sha256={expected}".encode())


def handler(log_fd: int, delay: float, hold: Path | None, secret: bytes) -> type[Any]:
    """The request handler class, bound to this process's settings."""

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            stamp = self.headers.get("X-Gateway-Timestamp", "")
            if not signed(secret, stamp, body, self.headers.get("X-Gateway-Signature", "")):
                self._answer(401)
                return
            envelope = json.loads(body)
            delivery = self.headers.get("X-Gateway-Delivery", "-")
            line = f"{time.time():.6f} {delivery} {envelope['id']} {envelope['version']}\n"
            os.write(log_fd, line.encode())  # O_APPEND: one whole line per write
            deadline = time.monotonic() + HOLD_LIMIT
            while hold is not None and hold.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            if delay:
                time.sleep(delay)
            self._answer(200)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the receipt log says what arrived

    return Hook


def main() -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("log", type=Path)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--hold", type=Path, default=None)
    args = parser.parse_args()
    log_fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    secret = os.environ.get(SECRET_ENV, "").encode()
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), handler(log_fd, args.delay, args.hold, secret)
    )
    server.daemon_threads = False  # server_close() waits for the requests in hand
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop.wait()
    server.shutdown()
    server.server_close()
    os.close(log_fd)


if __name__ == "__main__":
    main()
