"""Starting and stopping the servers under test, all on 127.0.0.1."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from payload import LOAD_SOURCE

BIN = Path(sys.executable).parent
GATEWAY = BIN / "gateway"
GUNICORN = BIN / "gunicorn"
BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Settings:
    """gunicorn's worker processes and threads per worker (gthread, as gateway/server.py)."""

    workers: int
    threads: int

    def __str__(self) -> str:
        return f"{self.workers}x{self.threads}"


@dataclass
class Server:
    """A running server: its process, port, SQLite file and log."""

    kind: str
    process: subprocess.Popen[bytes]
    port: int
    db_path: Path
    log_path: Path
    settings: Settings
    log_file: IO[bytes] | None = field(repr=False, default=None)

    @property
    def intake_path(self) -> str:
        return "/fhir/$process-message"

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM to the gunicorn master started here), then wait."""
        stop_process(self.process, self.log_file, timeout)

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)


def stop_process(
    process: subprocess.Popen[bytes], log_file: IO[bytes] | None, timeout: float = 30.0
) -> int | None:
    """SIGTERM, wait for a graceful exit (kill after ``timeout``), close the log; the status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if log_file is not None:
        log_file.close()
    return process.returncode


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a server's log."""
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def gateway_env(db_path: Path, settings: Settings | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["GATEWAY_DATABASE_URL"] = f"sqlite:///{db_path}"
    if settings is not None:
        env["GATEWAY_WORKERS"] = str(settings.workers)
        env["GATEWAY_THREADS"] = str(settings.threads)
    return env


def create_source_key(db_path: Path, source: str = LOAD_SOURCE) -> str:
    """``gateway keys create --source`` against the benchmark's store; returns the key."""
    done = subprocess.run(
        [str(GATEWAY), "keys", "create", "--source", source],
        env=gateway_env(db_path),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise SystemExit(f"gateway keys create failed:\n{done.stdout}{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def _wait_healthy(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.kind} exited during start-up:\n{server.log_tail()}")
        try:
            conn = http.client.HTTPConnection(HOST, server.port, timeout=2)
            conn.request("GET", "/healthz")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise SystemExit(f"{server.kind} not healthy after {timeout:.0f} s:\n{server.log_tail()}")


def _start(
    kind: str, argv: list[str], env: dict[str, str], port: int, db: Path, workdir: Path, s: Settings
) -> Server:
    log_path = workdir / f"{kind}.log"
    log_file = log_path.open("ab")
    process = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(kind, process, port, db, log_path, s, log_file)
    _wait_healthy(server)
    return server


def start_gateway(db_path: Path, workdir: Path, settings: Settings) -> Server:
    """``gateway serve --port P`` with the store and gunicorn settings from the environment."""
    port = free_port()
    argv = [str(GATEWAY), "serve", "--port", str(port)]
    env = gateway_env(db_path, settings)
    return _start("gateway", argv, env, port, db_path, workdir, settings)


def start_baseline(db_path: Path, workdir: Path, settings: Settings) -> Server:
    """bench/baseline_app.py under gunicorn, gthread, the same workers and threads."""
    port = free_port()
    argv = [
        str(GUNICORN),
        "--chdir",
        str(BENCH),
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(settings.workers),
        "--threads",
        str(settings.threads),
        "--worker-class",
        "gthread",
        "--timeout",
        "60",
        "--graceful-timeout",
        "30",
        "baseline_app:app",
    ]
    env = dict(os.environ, BENCH_BASELINE_DB=str(db_path))
    return _start("baseline", argv, env, port, db_path, workdir, settings)


def count_rows(db_path: Path, table: str = "referrals") -> int:
    """Rows in ``table``, read with the sqlite3 module (WAL readers do not block writers)."""
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def duplicate_message_ids(db_path: Path) -> int:
    """Gateway messages whose MessageHeader id repeats an earlier one (0 when ids are unique)."""
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        row = conn.execute(
            "SELECT count(*) - count(DISTINCT source_message_id) FROM messages"
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of an SQLite store (the backup API, so WAL content comes along)."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def remove_database(path: Path) -> None:
    """Delete an SQLite file with its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
