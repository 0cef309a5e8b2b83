"""A real FHIR R4 server for tests: sekmet-fhir in a subprocess on 127.0.0.1.

It listens on a free loopback port with its SQLite store in a temporary folder and its
simulator off (so it never answers a ServiceRequest or Task by itself). ``stop()`` and
``start()`` keep the port and the data, for "the server went away mid-run" tests.
Every wait is bounded.

Quirks worth knowing (sekmet-fhir 0.1.x): it is lenient where HAPI is strict. It ignores
unknown search parameters (it adds a warning OperationOutcome entry, search mode
"outcome", to the searchset; HAPI answers 400), accepts dangling references, and pages by
live offset (HAPI pages a cached snapshot). Resources written in one transaction get
lastUpdated values a millisecond or so apart. Tests against it assert counts and content.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port nobody listens on at the moment, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FhirServer:
    """sekmet-fhir serving ``base`` (http://127.0.0.1:PORT/fhir) from ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.log_path = self.workdir / "sekmet.log"
        self.settings = self.workdir / "settings.yaml"
        self.settings.write_text(
            "\n".join(
                [
                    f"base_url: {self.base}",
                    "host: 127.0.0.1",
                    f"port: {self.port}",
                    f"data_dir: {self.workdir / 'data'}",
                    f"own_private_key_path: {self.workdir / 'keys' / 'sekmet_private.pem'}",
                    "log_inbound: false",
                    "simulator:",
                    "  enabled: false",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        """The command line that runs the server."""
        return [
            sys.executable,
            "-m",
            "sekmet.cli",
            "serve",
            "--config",
            str(self.settings),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start (or restart) the server and wait until /metadata answers."""
        if self.running:
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
        env["SEKMET_CONFIG"] = str(self.settings)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sekmet exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.base}/metadata", timeout=1.0).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"sekmet did not answer /metadata within {timeout}s:\n{self.log()}")

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); the data stays."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)
        self._wait_port_closed(timeout)

    def _wait_port_closed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.2)
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)

    def log(self, tail: int = 4000) -> str:
        """The end of the server's output."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-tail:]
        except OSError:
            return ""

    # ---- FHIR helpers for assertions ----

    def search(self, resource_type: str, **params: str) -> dict[str, Any]:
        """A searchset (a no-cache GET, as the gateway sends)."""
        response = requests.get(
            f"{self.base}/{resource_type}",
            params={"_count": "1000", **params},
            headers={"Accept": "application/fhir+json", "Cache-Control": "no-cache"},
            timeout=10,
        )
        response.raise_for_status()
        return dict(response.json())

    def resources(self, resource_type: str, **params: str) -> list[dict[str, Any]]:
        """The matching resources (search mode "match" only)."""
        bundle = self.search(resource_type, **params)
        entries: list[dict[str, Any]] = bundle.get("entry") or []
        return [
            e["resource"]
            for e in entries
            if (e.get("search") or {}).get("mode", "match") == "match"
            and e["resource"]["resourceType"] == resource_type
        ]

    def count(self, resource_type: str, **params: str) -> int:
        """How many resources of a type match."""
        return len(self.resources(resource_type, **params))

    def __enter__(self) -> FhirServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
