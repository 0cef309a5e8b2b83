"""Processes for the fault tests: gateway commands to start and SIGKILL, a store, a target.

Every process runs in its own session with its output in a log file under the test's
temporary folder; ``Processes.close`` kills every one still running (its whole session).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gateway.store.database import Database
from gateway.store.keys import create_key
from gateway.store.migrate import upgrade

GATEWAY = str(Path(sys.executable).parent / "gateway")
RECEIVER = str(Path(__file__).resolve().parent / "receiver.py")
SECRET_ENV = "FAULTS_WEBHOOK_SECRET"
SECRET = "fault-suite-webhook-secret"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
#: Lines for the terminal summary: the seed and each test's counts.
REPORT: list[str] = []


def report(line: str) -> None:
    """Add one line to the fault summary (and to the test's captured output)."""
    print(line)
    REPORT.append(f"  {line}")


def wait_for(condition: Callable[[], bool], seconds: float, step: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def at_least(count: Callable[[], int], n: int) -> Callable[[], bool]:
    """A condition for ``wait_for``: ``count()`` has reached ``n``."""
    return lambda: count() >= n


def port_open(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def listening(port: int) -> Callable[[Process], bool]:
    """Readiness: something accepts connections on ``port``."""
    return lambda process: port_open(port)


def answering(port: int) -> Callable[[Process], bool]:
    """Readiness: GET /healthz on ``port`` answers 200."""

    def ready(process: Process) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                conn.request("GET", "/healthz")
                return conn.getresponse().status == 200
            finally:
                conn.close()
        except OSError:
            return False

    return ready


def polling(store: Path) -> Callable[[Process], bool]:
    """Readiness: the process holds ``store`` open (an outbox worker that began polling)."""
    return lambda process: process.alive and opened(process.pid, store)


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def live_pids(*, parent: int | None = None, group: int | None = None) -> list[int]:
    """Live (not zombie) processes with this parent pid or in this process group."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is None or fields[0] in ("Z", "X"):
            continue
        if (parent is not None and int(fields[1]) == parent) or (
            group is not None and int(fields[2]) == group
        ):
            found.append(int(entry))
    return sorted(found)


def opened(pid: int, path: Path) -> bool:
    """True when process ``pid`` holds ``path`` open (a worker that reached its store)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
    return False


def connected_to(pid: int, port: int) -> bool:
    """True when process ``pid`` holds an established TCP connection to 127.0.0.1:``port``."""
    inodes = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if state == "01" and int(remote.split(":")[1], 16) == port:
            inodes.add(f"socket:[{inode}]")
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
    return False


class Process:
    """One command in its own session (process group), its output appended to a log."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        ready: Callable[[Process], bool],
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.ready = ready
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        #: Every session started, so orphans of a killed command are stopped too.
        self.groups: list[int] = []

    @property
    def pid(self) -> int:
        """The pid of the running command."""
        assert self.popen is not None, f"{self.name} is not started"
        return self.popen.pid

    @property
    def alive(self) -> bool:
        """True while the command itself runs."""
        return self.popen is not None and self.popen.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the command and wait until it is ready."""
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the command (``wait_ready`` waits for it)."""
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts} at {time.time():.3f}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        self.groups.append(self.popen.pid)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the command is ready; fail if it exits or takes too long."""
        deadline = time.monotonic() + timeout
        while not self.ready(self):
            if not self.alive:
                raise RuntimeError(f"{self.name} exited during start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def children(self) -> list[int]:
        """Live child processes of the command (gunicorn's workers)."""
        return live_pids(parent=self.pid)

    def kill(self, pid: int | None = None) -> float:
        """SIGKILL the command (or one of its processes); the time.time() of the kill."""
        target = self.pid if pid is None else pid
        at = time.time()
        os.kill(target, signal.SIGKILL)
        if target == self.pid:
            assert self.popen is not None
            self.popen.wait(STOP_TIMEOUT)
        return at

    def kill_group(self) -> float:
        """SIGKILL every process of the session at once; the time.time() of the kill."""
        at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        assert self.popen is not None
        self.popen.wait(STOP_TIMEOUT)
        return at

    def wait_group_gone(self, timeout: float = STOP_TIMEOUT) -> None:
        """Wait until no process of the session is left (orphaned workers exit by themselves)."""
        if not wait_for(lambda: not live_pids(group=self.pid), timeout):
            raise RuntimeError(f"{self.name}: processes left: {live_pids(group=self.pid)}")
        self.groups.remove(self.pid)  # gone: its id may be given to someone else's group

    def stop(self) -> None:
        """SIGTERM the session, wait, then SIGKILL whatever is left of every session started.

        A group is signalled only while it has live members: a process group's id is not
        given out again while the group exists, so no one else's processes are touched."""
        if self.popen is None:
            return
        if self.alive or live_pids(group=self.popen.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(STOP_TIMEOUT)
        for group in self.groups:
            if live_pids(group=group):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(STOP_TIMEOUT)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the command's output."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def log_text(self) -> str:
        """The command's whole output so far."""
        return self.log_path.read_text(errors="replace")


class Store:
    """A migrated SQLite store in the test's folder, and the environment that names it."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "gateway.db"
        self.url = f"sqlite:///{self.path}"
        self.folder = folder
        database = Database(self.url)
        upgrade(database)
        database.dispose()

    def key(self, kind: str, name: str) -> str:
        """A new API key."""
        database = Database(self.url)
        try:
            return create_key(database, kind, name)
        finally:
            database.dispose()

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a gateway process on this store."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        return {
            **base,
            "GATEWAY_DATABASE_URL": self.url,
            "GATEWAY_LOG_LEVEL": "INFO",
            "XDG_RUNTIME_DIR": str(self.folder),
            SECRET_ENV: SECRET,
            **{f"GATEWAY_{k}": v for k, v in extra.items()},
        }


class Processes:
    """Starts the processes of one test; ``close`` kills every one still running."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Process] = []

    def _add(self, process: Process, wait: bool) -> Process:
        self.started.append(process)
        process.launch()
        if wait:
            process.wait_ready()
        return process

    def serve(
        self, store: Store, port: int, workers: int = 2, *, wait: bool = True, **env: str
    ) -> Process:
        """``gateway serve`` (gunicorn master and workers), ready once /healthz answers 200."""
        argv = [GATEWAY, "serve", "--port", str(port), "--workers", str(workers), "--no-migrate"]
        log = self.folder / f"serve-{port}.log"
        return self._add(Process("serve", argv, store.env(**env), log, answering(port)), wait)

    def mllp(self, store: Store, source: str, port: int, *, wait: bool = True) -> Process:
        """``gateway mllp --listen SOURCE=PORT``, ready once the port accepts."""
        argv = [GATEWAY, "mllp", "--listen", f"{source}={port}", "--no-migrate"]
        log = self.folder / f"mllp-{port}.log"
        return self._add(Process("mllp", argv, store.env(), log, listening(port)), wait)

    def worker(
        self, store: Store, destinations: Path, name: str = "worker", *, wait: bool = True
    ) -> Process:
        """``gateway worker``, ready once it holds the store open (it is polling)."""
        argv = [GATEWAY, "worker", "--no-migrate"]
        env = store.env(DESTINATIONS=str(destinations))
        log = self.folder / f"{name}.log"
        return self._add(Process(name, argv, env, log, polling(store.path)), wait)

    def receiver(
        self,
        port: int,
        log: Path,
        *,
        delay: float = 0.0,
        hold: Path | None = None,
        wait: bool = True,
    ) -> Process:
        """The webhook target (receiver.py), ready once the port accepts."""
        argv = [sys.executable, RECEIVER, str(port), str(log), "--delay", str(delay)]
        if hold is not None:
            argv += ["--hold", str(hold)]
        env = {**os.environ, SECRET_ENV: SECRET}
        out = self.folder / f"receiver-{port}.log"
        return self._add(Process("receiver", argv, env, out, listening(port)), wait)

    def close(self) -> None:
        """Stop every process started here (their whole sessions)."""
        for process in self.started:
            process.stop()


def destinations_file(folder: Path, webhook_port: int) -> Path:
    """A destinations file with one platform whose webhook is the receiver on ``webhook_port``."""
    path = folder / "destinations.yaml"
    path.write_text(
        "platforms:\n"
        "  faults:\n"
        f"    webhook: http://127.0.0.1:{webhook_port}/hook\n"
        f"    secret_env: {SECRET_ENV}\n"
        "    timeout: 30\n",
        encoding="utf-8",
    )
    return path
