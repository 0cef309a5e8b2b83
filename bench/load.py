"""Load generation: wrk with bench/post_referral.lua, or a Python fallback without wrk."""

from __future__ import annotations

import http.client
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from payload import fill
from servers import HOST, Server

LUA = Path(__file__).resolve().parent / "post_referral.lua"
CONNECTIONS = 8
WRK_THREADS = 2


@dataclass
class LoadResult:
    """What one load run measured, from the client's side."""

    tool: str
    seconds: float
    requests: int
    ok: int
    non2xx: int
    socket_errors: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    first_bad: str = ""

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_second": self.per_second}


def wrk_path() -> str | None:
    return shutil.which("wrk")


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/fhir+json"}


def run_wrk(server: Server, template: Path, run_tag: int, key: str, seconds: float) -> LoadResult:
    """wrk -t2 -c8 --latency for ``seconds``; the Lua script reports via a BENCH_RESULT line."""
    wrk = wrk_path()
    assert wrk is not None
    argv = [
        wrk,
        f"-t{WRK_THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        f"http://{HOST}:{server.port}{server.intake_path}",
        "--",
        str(template),
        str(run_tag),
        key,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    lines = done.stdout.splitlines()
    found = [ln.removeprefix("BENCH_RESULT ") for ln in lines if ln.startswith("BENCH_RESULT ")]
    if done.returncode != 0 or not found:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = orjson.loads(found[0])
    bad = [ln.removeprefix("BENCH_FIRST_BAD ") for ln in lines if ln.startswith("BENCH_FIRST_BAD ")]
    socket_errors = sum(
        raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return LoadResult(
        tool="wrk",
        seconds=raw["duration_us"] / 1e6,
        requests=raw["requests"],
        ok=raw["ok"],
        non2xx=raw["non2xx"],
        socket_errors=socket_errors,
        mean_ms=raw["mean_us"] / 1e3,
        p50_ms=raw["p50_us"] / 1e3,
        p90_ms=raw["p90_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
        max_ms=raw["max_us"] / 1e3,
        first_bad=bad[0] if bad else "",
    )


class _Client(threading.Thread):
    """One keep-alive connection sending requests back to back until the deadline."""

    def __init__(
        self, server: Server, template: bytes, run_tag: int, tid: int, key: str, stop_at: float
    ) -> None:
        super().__init__(daemon=True)
        self.server, self.template, self.run_tag, self.tid = server, template, run_tag, tid
        self.headers, self.stop_at = headers(key), stop_at
        self.latencies: list[float] = []
        self.ok = self.non2xx = self.errors = 0
        self.first_bad = ""

    def run(self) -> None:
        conn = http.client.HTTPConnection(HOST, self.server.port, timeout=10)
        counter = 0
        while time.perf_counter() < self.stop_at:
            counter += 1
            body = fill(self.template, self.run_tag, self.tid, counter)
            start = time.perf_counter()
            try:
                conn.request("POST", self.server.intake_path, body, self.headers)
                response = conn.getresponse()
                text = response.read()
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, self.server.port, timeout=10)
                continue
            self.latencies.append(time.perf_counter() - start)
            if 200 <= response.status < 300:
                self.ok += 1
            else:
                self.non2xx += 1
                if not self.first_bad:
                    self.first_bad = f"{response.status} {text[:400].decode(errors='replace')}"
        conn.close()


def _percentile(ordered: list[float], pct: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def run_python(
    server: Server, template: bytes, run_tag: int, key: str, seconds: float, clients: int
) -> LoadResult:
    """``clients`` threads with http.client keep-alive connections (the no-wrk fallback).

    Unlike wrk, each client waits for every response, so a run ends with nothing in flight.
    """
    start = time.perf_counter()
    threads = [
        _Client(server, template, run_tag, tid, key, start + seconds)
        for tid in range(1, clients + 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    latencies = sorted(x * 1e3 for t in threads for x in t.latencies)
    return LoadResult(
        tool="python",
        seconds=elapsed,
        requests=len(latencies),
        ok=sum(t.ok for t in threads),
        non2xx=sum(t.non2xx for t in threads),
        socket_errors=sum(t.errors for t in threads),
        mean_ms=sum(latencies) / len(latencies) if latencies else 0.0,
        p50_ms=_percentile(latencies, 50),
        p90_ms=_percentile(latencies, 90),
        p99_ms=_percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else 0.0,
        first_bad=next((t.first_bad for t in threads if t.first_bad), ""),
    )


def warm_up(server: Server, template: bytes, run_tag: int, key: str, per_client: int) -> None:
    """A few requests on 8 concurrent connections, so every worker has loaded everything.

    Every request completes before this returns, so the store can be counted right after.
    """
    failures: list[str] = []

    def client(tid: int) -> None:
        conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
        try:
            for counter in range(1, per_client + 1):
                body = fill(template, run_tag, tid, counter)
                conn.request("POST", server.intake_path, body, headers(key))
                response = conn.getresponse()
                text = response.read()
                if not 200 <= response.status < 300:
                    failures.append(f"{response.status} {text[:400]!r}")
                    return
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(t,)) for t in range(1, CONNECTIONS + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"{server.kind} warm-up request failed: {failures[0]}")
