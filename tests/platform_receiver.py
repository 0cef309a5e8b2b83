"""A link-worker platform's webhook receiver on 127.0.0.1, and delivering the outbox to it.

``PlatformReceiver`` is a real HTTP server in a thread that checks each webhook's signature
as a platform would (``verify_signature``) and keeps what it was sent; ``deliver_all`` runs
the gateway's own outbox worker until nothing is due.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from flask import Flask

from gateway.outbound.deliverers import build_deliverers
from gateway.outbound.destinations import Retry
from gateway.outbound.webhook import verify_signature
from gateway.outbound.worker import Worker
from gateway.services import services

SECRET_ENV = "TEST_PLATFORM_SECRET"
SECRET = "platform-shared-secret-" + "x" * 16


@dataclass
class Received:
    """One webhook as the platform got it."""

    path: str
    event: str
    body: dict[str, Any]
    signed: bool


@dataclass
class PlatformReceiver:
    """Webhook endpoints ``/<hub>`` on one port; ``received`` in arrival order."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The receiver's base URL."""
        return f"http://127.0.0.1:{self.server.server_port}"

    def destinations_file(self, directory: Path, hubs: tuple[str, ...]) -> Path:
        """A destinations file sending each hub's webhooks to ``/<hub>`` here."""
        lines = ["platforms:"]
        for hub in hubs:
            lines.append(f"  {hub}: {{webhook: '{self.url}/{hub}', secret_env: {SECRET_ENV}}}")
        path = directory / "destinations.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def start_receiver() -> PlatformReceiver:
    """A receiver serving from a daemon thread (set SECRET_ENV to SECRET for the gateway)."""
    received: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            signed = verify_signature(
                SECRET.encode(),
                self.headers.get("X-Gateway-Timestamp", ""),
                body,
                self.headers.get("X-Gateway-Signature", ""),
            )
            event = self.headers.get("X-Gateway-Event", "")
            received.append(Received(self.path, event, json.loads(body), signed))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return PlatformReceiver(server, received)


def deliver_all(app: Flask, limit: int = 100) -> int:
    """Run the gateway's outbox worker until nothing is due; how many items it delivered."""
    attached = services(app)
    worker = Worker(
        attached.db,
        build_deliverers(attached.destinations),
        Retry(max_attempts=1, base_delay=0.0, max_delay=0.0),
    )
    done = 0
    while done < limit and worker.run_once():
        done += 1
    return done
