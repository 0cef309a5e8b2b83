"""Slow HTTP clients: /healthz and a referral POST timed with 0 and 40 slow clients.

Run alone (``.venv/bin/python bench/slow_clients.py --before HEAD``) or from bench/run.py
(``--slow-clients``). Each side is a real ``gateway serve`` at the shipped settings (2
workers x 8 threads), on a fresh SQLite store with a source key: the working tree ("after")
and, with ``--before REF``, the tree of commit REF extracted with ``git archive`` ("before"),
run alternately in the same run. Half of the slow clients trickle a header line one byte a
second and never end their head; the other half send a source's key and a head announcing a
10 kB body, 100 bytes of it, and stall. A slow client that is closed (408) connects again
at once, so the pressure stays at 40 for the whole measurement. Then each side takes
``--http-seconds`` of referral load (wrk, as section 2) in each of ``--rounds`` rounds.

Figures on the shared 2-core machine, 2026-12-03, 06:41-06:44 UTC, ``--before HEAD
--samples 30 --rounds 3`` (HEAD: gunicorn's gthread; after: gateway/http_front.py), ms:

| side | probe | p50 / p99, quiet | p50 / p99, 40 slow | failed with 40 slow |
|---|---|---|---|---|
| before | /healthz | 4.6 / 5.2 | 1,006 / 2,000 (timed out) | 15 of 30 |
| before | referral | 6.4 / 38.5 | 2,000 / 2,000 (timed out) | 16 of 30 |
| after | /healthz | 7.1 / 18.5 | 7.6 / 8.5 | 0 |
| after | referral | 6.0 / 55.3 | 6.0 / 8.6 | 0 |

Referral throughput without slow clients, same run: before 302 req/s (rounds 308, 263,
302), after 290 req/s (289, 314, 254): within the noise of single runs. An earlier run
(06:24 UTC) gave after +10.8 ms (/healthz) and +6.5 ms (referral) at p99 with 40 slow.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from load import CONNECTIONS, headers, run_python, run_wrk, wrk_path
from payload import LOAD_SOURCE, fill, referral_template
from servers import BIN, HOST, Server, Settings, free_port, log_tail, stop_process

ROOT = Path(__file__).resolve().parent.parent
SLOW = 40
SAMPLES = 30
PROBE_TIMEOUT = 2.0  # a probe still waiting then counts as this long
TARGET_EXTRA_MS = 100.0
HTTP_SECONDS = 5.0
ROUNDS = 2
INTAKE = "/fhir/$process-message"
_TRICKLE = b"POST /fhir/$process-message HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def _stall(key: str) -> bytes:
    """A head with a source's key (so the application reads the body) and 100 bytes of it."""
    return (
        b"POST /fhir/$process-message HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\n"
        b"Content-Type: application/fhir+json\r\nContent-Length: 10000\r\n\r\n" + b"{" * 100
    )


class SlowClients:
    """``count`` slow connections driven by one thread with a selector, kept at ``count``."""

    def __init__(self, port: int, count: int, key: str) -> None:
        self.port = port
        self.key = key
        self.count = count
        self.reconnects = 0
        self.answers: dict[bytes, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self, selector: selectors.BaseSelector, trickle: bool) -> None:
        sock = socket.create_connection((HOST, self.port), timeout=5)
        sock.sendall(_TRICKLE if trickle else _stall(self.key))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, trickle)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for n in range(self.count):
            self._open(selector, trickle=n % 2 == 0)
        next_byte = time.monotonic() + 1.0
        while not self._stop.is_set():
            for key, _ in selector.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 "):
                    status = data[9:12]
                    self.answers[status] = self.answers.get(status, 0) + 1
                if not data:  # closed by the server: come back at once
                    selector.unregister(sock)
                    sock.close()
                    self.reconnects += 1
                    self._open(selector, key.data)
            if time.monotonic() >= next_byte:
                next_byte += 1.0
                for key in list(selector.get_map().values()):
                    if key.data and isinstance(key.fileobj, socket.socket):
                        with contextlib.suppress(OSError):
                            key.fileobj.send(b"a")
        for key in list(selector.get_map().values()):
            if isinstance(key.fileobj, socket.socket):
                key.fileobj.close()
        selector.close()


def _percentile(ordered: list[float], pct: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def probe(port: int, key: str, samples: int, tag: int) -> dict[str, dict[str, float]]:
    """``samples`` of each, alternately, one new connection each: ms p50/p99/max, timeouts."""
    template = referral_template()
    times: dict[str, list[float]] = {"healthz": [], "referral": []}
    failed = {"healthz": 0, "referral": 0}
    for n in range(samples):
        for name in times:
            body = fill(template, tag, 1, n + 1) if name == "referral" else None
            start = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(HOST, port, timeout=PROBE_TIMEOUT)
                if body is None:
                    conn.request("GET", "/healthz")
                else:
                    conn.request("POST", INTAKE, body, headers(key))
                response = conn.getresponse()
                response.read()
                conn.close()
                ok = response.status in (200, 201)
            except (OSError, http.client.HTTPException):
                ok = False
            elapsed = time.perf_counter() - start
            times[name].append(min(elapsed, PROBE_TIMEOUT) * 1000)
            failed[name] += not ok
            time.sleep(0.01)
    out = {}
    for name, values in times.items():
        ordered = sorted(values)
        out[name] = {
            "p50_ms": statistics.median(ordered),
            "p99_ms": _percentile(ordered, 99),
            "max_ms": ordered[-1],
            "failed": failed[name],
        }
    return out


@contextmanager
def tree_of(ref: str) -> Iterator[Path]:
    """The files of commit ``ref`` in a temporary folder (``git archive``; no git state)."""
    with tempfile.TemporaryDirectory(prefix="gateway-slow-before-") as tmp:
        archive = Path(tmp) / "tree.tar"
        with archive.open("wb") as out:
            subprocess.run(["git", "-C", str(ROOT), "archive", ref], stdout=out, check=True)
        tree = Path(tmp) / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
        yield tree


def tree_env(
    tree: Path, workdir: Path, db: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of a gateway command of ``tree`` on store ``db`` (plus ``extra``)."""
    return {
        **os.environ,
        "PYTHONPATH": str(tree),
        "GATEWAY_DATABASE_URL": f"sqlite:///{db}",
        "GATEWAY_OUTBOX_IN_SERVE": "0",
        "GATEWAY_LOG_LEVEL": "WARNING",
        # An older tree may open gunicorn's control socket: keep it out of the user's one.
        "XDG_RUNTIME_DIR": str(workdir),
        **(extra or {}),
    }


def start(
    tree: Path, workdir: Path, name: str, extra: dict[str, str] | None = None
) -> tuple[Server, str]:
    """``gateway serve`` of ``tree`` at the shipped settings, healthy, and a source key
    (``extra``: more environment, e.g. GATEWAY_DESTINATIONS)."""
    db = workdir / f"{name}.db"
    env = tree_env(tree, workdir, db, extra)
    gateway = str(BIN / "gateway")
    subprocess.run([gateway, "db", "upgrade"], env=env, cwd=tree, check=True, capture_output=True)
    created = subprocess.run(
        [gateway, "keys", "create", "--source", LOAD_SOURCE],
        env=env,
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    log_path = workdir / f"{name}.log"
    log_file = log_path.open("ab")
    argv = [gateway, "serve", "--port", str(port), "--no-migrate"]
    process = subprocess.Popen(argv, env=env, cwd=tree, stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(name, process, port, db, log_path, Settings(2, 8), log_file)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} gateway exited:\n{log_tail(log_path)}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return server, key
        except OSError:
            pass
        time.sleep(0.1)
    stop_process(process, log_file)
    raise SystemExit(f"{name} gateway not healthy:\n{log_tail(log_path)}")


def measure(
    tree: Path, workdir: Path, name: str, samples: int, slow: int, http_seconds: float
) -> dict[str, Any]:
    """One server: warm-up, the probes with no slow client and with ``slow`` of them (when
    ``samples``), then ``http_seconds`` of referral load (wrk, or the Python fallback)."""
    server, key = start(tree, workdir, name)
    out: dict[str, Any] = {}
    try:
        probe(server.port, key, 5, 1)  # warm-up: every worker has loaded everything
        if samples:
            out["quiet"] = probe(server.port, key, samples, 2)
            with SlowClients(server.port, slow, key) as clients:
                time.sleep(1.0)  # let them take what they can
                out["slow"] = probe(server.port, key, samples, 3)
            out["slow_reconnects"] = clients.reconnects
            out["slow_answers"] = {k.decode(): v for k, v in clients.answers.items()}
        if http_seconds > 0:
            out["http"] = _load(server, key, workdir, http_seconds)
    finally:
        server.stop()
    return out


def _load(server: Server, key: str, workdir: Path, seconds: float) -> dict[str, Any]:
    """Referral throughput over 8 keep-alive connections, as section 2 loads it."""
    template = referral_template()
    if wrk_path() is None:
        result = run_python(server, template, 7, key, seconds, CONNECTIONS)
    else:
        template_path = workdir / "template.json"
        template_path.write_bytes(template)
        result = run_wrk(server, template_path, 7, key, seconds)
    return {k: v for k, v in result.as_dict().items() if k != "first_bad"}


def run(
    before: str | None,
    samples: int = SAMPLES,
    slow: int = SLOW,
    http_seconds: float = HTTP_SECONDS,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """Before (commit ``before``, when given) and after (the working tree), alternately:
    the probes in the first round, the throughput in every round (medians reported)."""
    out: dict[str, Any] = {
        "before_ref": before,
        "samples": samples,
        "slow_clients": slow,
        "http_seconds": http_seconds,
        "loadgen": "wrk" if wrk_path() else "python",
    }
    with tempfile.TemporaryDirectory(prefix="gateway-slow-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        trees = {"after": ROOT}
        if before is not None:
            trees = {"before": stack.enter_context(tree_of(before)), **trees}
        for round_no in range(rounds):
            for side, tree in trees.items():
                n = samples if round_no == 0 else 0
                got = measure(tree, workdir, f"{side}-{round_no}", n, slow, http_seconds)
                side_data = out.setdefault(side, {"http_runs": []})
                side_data["http_runs"] += [got.pop("http")] if "http" in got else []
                side_data.update(got)
    for side in trees:
        runs = out[side]["http_runs"]
        if runs:
            out[side]["http_per_second"] = statistics.median(r["per_second"] for r in runs)
            out[side]["http_p99_ms"] = statistics.median(r["p99_ms"] for r in runs)
    return out


def report(data: dict[str, Any]) -> None:
    """Print the table: p50/p99/max ms per side, endpoint and load; the extra p99."""
    print(
        f"9. Slow clients: {data['samples']} of each probe (new connection each), alternately,"
        f" with 0 and {data['slow_clients']} slow clients"
    )
    print("   (half trickle a header byte a second, half stall a keyed 10 kB body after 100 B)")
    print(
        f"   {'side':<7}{'probe':<10}{'slow':>5}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'failed':>7}{'extra p99':>11}"
    )
    for side in ("before", "after"):
        if side not in data:
            continue
        run_data = data[side]
        if "quiet" not in run_data:
            continue
        for name in ("healthz", "referral"):
            base = run_data["quiet"][name]["p99_ms"]
            for load, slow in (("quiet", 0), ("slow", data["slow_clients"])):
                row = run_data[load][name]
                extra = row["p99_ms"] - base
                mark = "" if load == "quiet" else f"{extra:>9.1f}ms"
                if load == "slow":
                    mark += "  met" if extra <= TARGET_EXTRA_MS else "  MISSED"
                print(
                    f"   {side:<7}{name:<10}{slow:>5}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
                    f"{row['max_ms']:>9.1f}{row['failed']:>7}{mark}"
                )
        print(
            f"   {side}: slow clients closed and back {run_data['slow_reconnects']} times;"
            f" answers they got: {run_data['slow_answers'] or 'none'}"
        )
    print(
        f"   target: at most {TARGET_EXTRA_MS:g} ms extra at p99; a probe counts"
        f" {PROBE_TIMEOUT:g} s at most (failed: timed out or not 2xx)"
    )
    if data["http_seconds"] > 0:
        print(
            f"   Referral throughput, no slow client ({data['loadgen']}, {CONNECTIONS} keep-alive"
            f" connections, {data['http_seconds']:g} s runs, alternating; medians):"
        )
        for side in ("before", "after"):
            if side in data and data[side]["http_runs"]:
                rounds = ", ".join(f"{r['per_second']:.0f}" for r in data[side]["http_runs"])
                print(
                    f"     {side:<7}{data[side]['http_per_second']:>8.1f} req/s"
                    f"   p99 {data[side]['http_p99_ms']:6.2f} ms   (rounds: {rounds})"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REF", help="also run the gateway of commit REF")
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--slow", type=int, default=SLOW)
    parser.add_argument("--http-seconds", type=float, default=HTTP_SECONDS, help="0: none")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="throughput rounds")
    args = parser.parse_args(argv)
    report(run(args.before, args.samples, args.slow, args.http_seconds, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
