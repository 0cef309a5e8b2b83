"""Benchmark the referral gateway: translation, HTTP intake, write-back, HL7 v2 and MLLP.

Run as ``.venv/bin/python bench/run.py`` (or ``make bench``). Prints a report and writes
the same figures to bench/results/latest.json. ``--sweep`` instead compares gunicorn
worker/thread settings (bench/results/sweep.json). Load goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import before_after
import inprocess
import mllp
import orjson
import outbox_drain
import slow_clients
import v2
import writeback
from baseline_app import create_schema
from load import CONNECTIONS, WRK_THREADS, LoadResult, run_python, run_wrk, warm_up, wrk_path
from payload import FIXTURES, LOAD_SOURCE, fill, ids, referral_template
from servers import (
    Server,
    Settings,
    copy_database,
    count_rows,
    create_source_key,
    duplicate_message_ids,
    remove_database,
    start_baseline,
    start_gateway,
)

from gateway.config import load_config
from gateway.intake.fhir import translate_message
from gateway.mapping.engine import load_mappings

RESULTS = Path(__file__).resolve().parent / "results"
# The gateway's shipped defaults (GATEWAY_WORKERS=2, GATEWAY_THREADS=8): the benchmark measures
# what ships, and runs the baseline with the same settings. With the keep-alive cap in place,
# 3-round runs on the 2-core machine (2026-11-22) gave the gateway 728 and 870 req/s at 2x8
# (p99 24 and 22 ms) against 698-762 at 3x2 and 593-693 at 4x2 (p99 27-31 ms); see
# bench/README.md. Threads matter to the gateway because concurrent writers of one process
# share a commit (gateway/store/group_commit.py).
DEFAULT_SETTINGS = Settings(workers=2, threads=8)
SWEEP = (
    Settings(1, 8),
    Settings(2, 1),
    Settings(2, 2),
    Settings(2, 4),
    Settings(2, 8),
    Settings(3, 1),
    Settings(3, 2),
    Settings(4, 1),
    Settings(4, 2),
)
RATIO_TARGET = 0.50
#: What counting may cost HTTP intake and MLLP throughput (issue 13).
METRICS_COST_TARGET = 0.05
P99_TARGET_MS = 25.0
WARM_UP_PER_CONNECTION = 5
_ACCESS_2XX = re.compile(r'"POST /fhir/\$process-message HTTP/1\.[01]" 2\d\d ')

Starter = Callable[[Path, Path, Settings], Server]


class ConnectionSplit:
    """How the load's connections fall between the server's worker processes, read with
    ``ss -tnp`` at a few moments of the load (empty when ``ss`` is missing).

    With a few long-lived keep-alive connections the split is luck (gunicorn's gthread
    workers poll one listening socket), and it decides whether one core or two serve. The
    gateway closes a connection every GATEWAY_KEEPALIVE_REQUESTS requests, so its split
    changes as the load runs; the baseline keeps gunicorn's default (no limit).
    """

    def __init__(self, port: int, moments: tuple[float, ...]) -> None:
        self.counts: list[list[int]] = []
        self._thread = threading.Thread(target=self._read, args=(port, moments))
        self._thread.start()

    def _read(self, port: int, moments: tuple[float, ...]) -> None:
        ss = shutil.which("ss")
        if ss is None:
            return
        start = time.monotonic()
        for moment in moments:
            time.sleep(max(0.0, start + moment - time.monotonic()))
            argv = [ss, "-tnp", "state", "established", f"( sport = :{port} )"]
            try:
                out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
            except (OSError, subprocess.SubprocessError):
                return
            per_pid = Counter(re.findall(r"pid=(\d+)", out))
            self.counts.append(sorted(per_pid.values(), reverse=True))

    def join(self) -> None:
        """Wait for the readings (the last is taken before the load ends)."""
        self._thread.join(30)


def split_text(counts: list[list[int]]) -> str:
    """Connections per worker at each reading, e.g. "8 5/3 4/4" ("-" without readings)."""
    return " ".join("/".join(map(str, c)) or "0" for c in counts) or "-"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="in-process time per source")
    parser.add_argument("--part-seconds", type=float, default=1.0, help="time per breakdown item")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per HTTP run")
    parser.add_argument("--rounds", type=int, default=3, help="baseline+gateway rounds")
    parser.add_argument("--workers", type=int, default=DEFAULT_SETTINGS.workers)
    parser.add_argument("--threads", type=int, default=DEFAULT_SETTINGS.threads)
    parser.add_argument(
        "--loadgen", choices=("auto", "wrk", "python"), default="auto", help="auto: wrk if found"
    )
    parser.add_argument(
        "--before",
        metavar="REF",
        help="also run translation (0), MLLP (7-8), slow clients (9) and the outbox drain"
        " (10) at this git commit, beside the working tree",
    )
    parser.add_argument(
        "--skip-translation-before", action="store_true", help="skip section 0 (with --before)"
    )
    parser.add_argument("--skip-inprocess", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-writeback", action="store_true")
    parser.add_argument("--skip-v2", action="store_true", help="skip in-process HL7 v2 (6)")
    parser.add_argument("--skip-mllp", action="store_true", help="skip MLLP end to end (7-8)")
    parser.add_argument(
        "--skip-slow-clients", action="store_true", help="skip slow clients (9; with --before)"
    )
    parser.add_argument("--slow-samples", type=int, default=slow_clients.SAMPLES)
    parser.add_argument(
        "--slow-http-seconds",
        type=float,
        default=slow_clients.HTTP_SECONDS,
        help="referral load per server in section 9 (0: none)",
    )
    parser.add_argument(
        "--skip-outbox-drain", action="store_true", help="skip the outbox drain (10)"
    )
    parser.add_argument("--drain-items", type=int, default=outbox_drain.ITEMS)
    parser.add_argument(
        "--drain-outage",
        type=float,
        default=outbox_drain.OUTAGE_SECONDS,
        help="seconds the webhook target answers 503 in section 10",
    )
    parser.add_argument("--drain-rounds", type=int, default=outbox_drain.ROUNDS)
    parser.add_argument("--drain-timeout", type=float, default=outbox_drain.DRAIN_TIMEOUT)
    parser.add_argument("--mllp-duration", type=float, default=10.0, help="seconds per MLLP run")
    parser.add_argument("--mllp-rounds", type=int, default=3, help="baseline+gateway MLLP rounds")
    parser.add_argument(
        "--mllp-profile", type=Path, help="py-spy the last gateway MLLP run into this raw file"
    )
    parser.add_argument(
        "--metrics-compare",
        action="store_true",
        help="also run HTTP intake and MLLP with GATEWAY_METRICS=0 and =1 alternately (11)",
    )
    parser.add_argument("--metrics-rounds", type=int, default=3, help="rounds of each, section 11")
    parser.add_argument(
        "--metrics-duration", type=float, default=10.0, help="seconds per run, section 11"
    )
    parser.add_argument(
        "--sweep", action="store_true", help="compare worker/thread settings instead"
    )
    parser.add_argument("--sweep-duration", type=float, default=5.0)
    return parser.parse_args(argv)


class Bench:
    """Shared state of the HTTP runs: the temporary stores, the key and the request template."""

    def __init__(self, workdir: Path, loadgen: str, duration: float) -> None:
        self.workdir = workdir
        self.duration = duration
        self.loadgen = loadgen
        self.template = referral_template()
        self.template_path = workdir / "referral-template.json"
        self.template_path.write_bytes(self.template)
        self._check_template()
        # Every run gets a fresh store: a copy of this one, migrated and holding the key.
        self.gateway_seed = workdir / "gateway-seed.db"
        self.key = create_source_key(self.gateway_seed)
        self.next_tag = 1

    def _check_template(self) -> None:
        """A filled template must translate, carrying the filled referral identifier."""
        mappings = load_mappings(FIXTURES.parent / "mappings")
        body = fill(self.template, 1, 1, 1)
        _, record, _ = translate_message(mappings, LOAD_SOURCE, body, inprocess.CONTENT_TYPE)
        uid, ref = ids(1, 1, 1)
        if record["referral"]["identifier"] != ref or uid not in body.decode():
            raise SystemExit("the load template does not carry unique ids as intended")

    def tag(self) -> int:
        self.next_tag += 1
        return self.next_tag

    def run(self, kind: str, settings: Settings) -> dict[str, Any]:
        """Start one server, warm it, load it, stop it, and check that nothing was lost."""
        starter: Starter = start_gateway if kind == "gateway" else start_baseline
        db = self.workdir / f"{kind}-{self.tag()}.db"
        if kind == "gateway":
            copy_database(self.gateway_seed, db)
        else:
            create_schema(str(db))
        server = starter(db, self.workdir, settings)
        try:
            # gunicorn writes an access-log line after the response has gone, so a warm-up
            # line can land after warm_up returns: count from before the warm-up and take the
            # warm-up's requests (all 2xx, or warm_up fails) off.
            log_offset = server.log_path.stat().st_size
            warm_up(server, self.template, self.tag(), self.key, WARM_UP_PER_CONNECTION)
            before = count_rows(db)
            cpu_before = tree_cpu_seconds(server.process.pid)
            tag = self.tag()
            moments = tuple(self.duration * share for share in (0.2, 0.5, 0.8))
            split = ConnectionSplit(server.port, moments)
            if self.loadgen == "wrk":
                result = run_wrk(server, self.template_path, tag, self.key, self.duration)
            else:
                result = run_python(
                    server, self.template, tag, self.key, self.duration, CONNECTIONS
                )
            split.join()
            cpu = tree_cpu_seconds(server.process.pid) - cpu_before
        finally:
            server.stop()  # graceful: in-flight requests finish before the count
        after = count_rows(db)
        out: dict[str, Any] = {"kind": kind, "settings": str(settings), **result.as_dict()}
        out["split"] = split.counts
        out["cpu_ms_per_request"] = cpu / result.ok * 1e3 if result.ok else 0.0
        out["stored"] = after - before
        if kind == "gateway":
            with server.log_path.open("rb") as log:
                log.seek(log_offset)
                text = log.read().decode(errors="replace")
            warm_up_requests = WARM_UP_PER_CONNECTION * CONNECTIONS
            out["server_2xx"] = sum(1 for _ in _ACCESS_2XX.finditer(text)) - warm_up_requests
            out["not_accepted_messages"] = count_rows(db, "messages WHERE status != 'accepted'")
            out["duplicate_message_ids"] = duplicate_message_ids(db)
        out["verify"] = verify(out, result)
        remove_database(db)
        if result.non2xx:
            raise SystemExit(
                f"FAILED: {kind} answered {result.non2xx} non-2xx responses of "
                f"{result.requests}; first: {result.first_bad}\nserver log tail:\n"
                f"{server.log_tail()}"
            )
        return out


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (gunicorn's master and workers)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
    return total


def verify(out: dict[str, Any], result: LoadResult) -> dict[str, Any]:
    """No lost referral: every 2xx the client saw is stored.

    wrk stops with up to one request in flight per connection; the server may commit those
    without wrk counting the answer, so stored may exceed the 2xx count by that much, never
    fall short of it. The Python client waits for every answer, so there the counts match
    unless a connection failed mid-request.
    """
    slack = CONNECTIONS if result.tool == "wrk" else result.socket_errors
    in_flight = out["stored"] - result.ok
    problems = []
    if in_flight < 0:
        problems.append(f"LOST: {-in_flight} acknowledged referrals are not stored")
    if in_flight > slack:
        problems.append(f"{in_flight} stored beyond the 2xx count (at most {slack} expected)")
    if "server_2xx" in out and out["server_2xx"] != out["stored"]:
        problems.append(f"access log shows {out['server_2xx']} 2xx, store {out['stored']}")
    if out.get("not_accepted_messages"):
        problems.append(f"{out['not_accepted_messages']} messages not accepted")
    if out.get("duplicate_message_ids"):
        problems.append(f"{out['duplicate_message_ids']} repeated MessageHeader ids")
    return {"in_flight": in_flight, "ok": not problems, "problems": problems}


def loadgen_choice(asked: str) -> tuple[str, str]:
    """The load generator to use and a note about it."""
    if asked == "python" or (asked == "auto" and wrk_path() is None):
        note = (
            "FALLBACK: wrk not found; Python http.client load generator, 8 threads with "
            "keep-alive (it shares the 2 CPUs and has the GIL; figures are not comparable "
            "with wrk runs). "
            "Install wrk: apt-get install -y wrk"
            if asked == "auto"
            else "Python http.client load generator (asked for)"
        )
        return "python", note
    if wrk_path() is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (or --loadgen python)")
    return "wrk", f"wrk, {WRK_THREADS} threads, {CONNECTIONS} connections, bench/post_referral.lua"


def median_of(runs: list[dict[str, Any]], name: str) -> float:
    return float(statistics.median(r[name] for r in runs))


def http_section(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Sections 2-4: baseline and gateway alternately, medians, ratio, loss check."""
    tool, note = loadgen_choice(args.loadgen)
    settings = Settings(args.workers, args.threads)
    bench = Bench(workdir, tool, args.duration)
    runs = []
    for round_no in range(1, args.rounds + 1):
        for kind in ("baseline", "gateway"):
            run = bench.run(kind, settings)
            run["round"] = round_no
            runs.append(run)
            _progress(run)
    summary: dict[str, Any] = {}
    for kind in ("baseline", "gateway"):
        mine = [r for r in runs if r["kind"] == kind]
        summary[kind] = {
            "per_second": median_of(mine, "per_second"),
            "p50_ms": median_of(mine, "p50_ms"),
            "p99_ms": median_of(mine, "p99_ms"),
        }
    ratio = summary["gateway"]["per_second"] / summary["baseline"]["per_second"]
    return {
        "loadgen": tool,
        "loadgen_note": note,
        "settings": {"workers": settings.workers, "threads": settings.threads},
        "keepalive_requests": load_config()["KEEPALIVE_REQUESTS"],
        "duration_s": args.duration,
        "connections": CONNECTIONS,
        "runs": runs,
        "median": summary,
        "ratio": ratio,
        "ratio_target": RATIO_TARGET,
        "p99_target_ms": P99_TARGET_MS,
        "no_lost_referral": all(r["verify"]["ok"] for r in runs),
    }


def sweep_section(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Each worker/thread setting once, baseline then gateway, for --sweep-duration."""
    tool, note = loadgen_choice(args.loadgen)
    bench = Bench(workdir, tool, args.sweep_duration)
    rows = []
    for settings in SWEEP:
        pair = {kind: bench.run(kind, settings) for kind in ("baseline", "gateway")}
        for run in pair.values():
            _progress(run)
        rows.append(
            {
                "settings": str(settings),
                "baseline": pair["baseline"],
                "gateway": pair["gateway"],
                "ratio": pair["gateway"]["per_second"] / pair["baseline"]["per_second"],
            }
        )
    return {"loadgen": tool, "loadgen_note": note, "duration_s": args.sweep_duration, "rows": rows}


def _progress(run: dict[str, Any]) -> None:
    print(
        f"  ... {run['kind']:<8} {run['settings']:>4}: {run['per_second']:7.1f} req/s, "
        f"p99 {run['p99_ms']:.1f} ms",
        file=sys.stderr,
        flush=True,
    )


def _mark(met: bool) -> str:
    return "met" if met else "MISSED"


def print_inprocess(data: dict[str, Any]) -> None:
    target = data["target_per_second"]
    print(f"1. In-process translate_message, pinned to CPU {data['cpu']} (one core)")
    print("   decode + structure check + mapping + record validation of 01-new-referral.json;")
    print("   'best' is the fastest 0.1 s window (this machine is shared and noisy)")
    head = f"   {'source':<10} {'body':>8} {'referrals/s':>12} {'mean µs':>8} {'best/s':>7}"
    print(f"{head}   target ≥ {target:,.0f}/s on one core")
    for row in data["translate"]:
        rate = row["per_second"]
        print(
            f"   {row['name']:<10} {row['body_bytes']:>6} B {rate:>12,.0f} {row['mean_us']:>8.0f}"
            f" {row['best_per_second']:>7,.0f}   {_mark(rate >= target)} ({rate / target:.0%})"
        )
    source = data["breakdown"]["source"]
    print(f"\n   Breakdown for {source} (µs per call, the steps timed in turn with the whole):")
    inprocess.print_breakdown(data["breakdown"]["parts"], 36, rest="rest (by difference)")
    print("     (mapping.translate includes validate_record; check and mapping reuse one")
    print("     decoded resource, the whole call decodes a fresh one each time)")
    print(f"\n   Record validation of the {source} record (µs per call):")
    fast = data["validation"][0]["best_window_us"]
    print(f"     {'validator':<40} {'mean':>8} {'best':>8} {'vs fast':>8}")
    for row in data["validation"]:
        print(
            f"     {row['name']:<40} {row['mean_us']:>8.1f} {row['best_window_us']:>8.1f}"
            f" {row['best_window_us'] / fast:>7.1f}x"
        )


def print_http(data: dict[str, Any]) -> None:
    s = data["settings"]
    print(
        f"2./3. HTTP intake, SQLite store (WAL, synchronous=FULL), gunicorn gthread "
        f"{s['workers']} workers x {s['threads']} threads"
    )
    print(f"   load: {data['loadgen_note']}; {data['duration_s']:g} s per run, alternating")
    cap = data["keepalive_requests"]
    print(
        f"   keep-alive: the gateway closes a connection every {cap} requests"
        if cap
        else "   keep-alive: no limit for the gateway (GATEWAY_KEEPALIVE_REQUESTS=0)"
    )
    print("   (GATEWAY_KEEPALIVE_REQUESTS); the baseline keeps gunicorn's default, no limit")
    print("   split: connections per worker at 20, 50 and 80 % of the run")
    print(
        f"   {'round':>5} {'server':<9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
        f" {'2xx':>6} {'non2xx':>6} {'stored':>6} {'inflight':>8} {'split':>11}  no lost referral"
    )
    for r in data["runs"]:
        check = "ok" if r["verify"]["ok"] else "FAIL " + "; ".join(r["verify"]["problems"])
        print(
            f"   {r['round']:>5} {r['kind']:<9} {r['per_second']:>8.1f} {r['p50_ms']:>7.2f}"
            f" {r['p99_ms']:>7.2f} {r['max_ms']:>7.1f} {r['ok']:>6} {r['non2xx']:>6}"
            f" {r['stored']:>6} {r['verify']['in_flight']:>8}"
            f" {split_text(r.get('split') or []):>11}  {check}"
        )
    med = data["median"]
    print("\n   Medians:")
    for kind in ("baseline", "gateway"):
        m = med[kind]
        print(
            f"     {kind:<9} {m['per_second']:>8.1f} req/s   p50 {m['p50_ms']:6.2f} ms"
            f"   p99 {m['p99_ms']:6.2f} ms"
        )
    ratio, p99 = data["ratio"], med["gateway"]["p99_ms"]
    print(
        f"     gateway/baseline throughput: {ratio:.0%}   target ≥ {data['ratio_target']:.0%}"
        f"   {_mark(ratio >= data['ratio_target'])}"
    )
    print(
        f"     gateway p99: {p99:.2f} ms   target ≤ {data['p99_target_ms']:g} ms"
        f"   {_mark(p99 <= data['p99_target_ms'])}"
    )
    gw = [r for r in data["runs"] if r["kind"] == "gateway"]
    print("\n4. No lost referral: gateway store counted with sqlite3 after a graceful stop")
    print("   stored must equal 2xx received + requests in flight when the load stopped (≤ 8)")
    print(
        f"   {'round':>5} {'2xx':>6} {'stored':>6} {'inflight':>8} {'log 2xx':>7}"
        f" {'rejected':>8} {'dup ids':>7}  result"
    )
    for r in gw:
        result = "ok" if r["verify"]["ok"] else "FAIL " + "; ".join(r["verify"]["problems"])
        print(
            f"   {r['round']:>5} {r['ok']:>6} {r['stored']:>6} {r['verify']['in_flight']:>8}"
            f" {r['server_2xx']:>7} {r['not_accepted_messages']:>8}"
            f" {r['duplicate_message_ids']:>7}  {result}"
        )
    print("   (log 2xx: 2xx lines in the gateway's access log; rejected: messages not")
    print("   accepted; dup ids: repeated MessageHeader ids, which would mean ids were not unique)")
    verdict = "PASS" if data["no_lost_referral"] else "FAIL"
    print(f"   {verdict}: every acknowledged referral is stored")


@contextlib.contextmanager
def _environment(**values: str) -> Any:
    """os.environ with ``values`` set (the servers started meanwhile inherit them)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def metrics_section(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Section 11: the gateway's HTTP intake and MLLP with metrics off and on, alternately
    (the order swapping each round), ``--metrics-rounds`` each; medians and the cost."""
    tool, _ = loadgen_choice(args.loadgen)
    bench = Bench(workdir, tool, args.metrics_duration)
    settings = Settings(args.workers, args.threads)
    template = workdir / "v2-template.hl7"
    template.write_bytes(mllp.message_template())
    runs: list[dict[str, Any]] = []
    for round_no in range(1, args.metrics_rounds + 1):
        for flag in ("0", "1") if round_no % 2 else ("1", "0"):
            with _environment(GATEWAY_METRICS=flag, GATEWAY_METRICS_DIR=str(workdir / "metrics")):
                http_run = bench.run("gateway", settings)
                mllp_run = mllp.run_one(
                    "gateway", workdir, template, bench.tag(), args.metrics_duration
                )
            http_run["cpu_ms"] = http_run["cpu_ms_per_request"]
            mllp_run["cpu_ms"] = mllp_run["cpu_ms_per_message"]
            for phase, run in (("http", http_run), ("mllp", mllp_run)):
                runs.append({"round": round_no, "metrics": flag == "1", "phase": phase, **run})
                print(
                    f"  ... metrics {'on ' if flag == '1' else 'off'} {phase}: "
                    f"{run['per_second']:7.1f}/s, p99 {run['p99_ms']:.1f} ms, "
                    f"server CPU {run['cpu_ms']:.2f} ms each",
                    file=sys.stderr,
                    flush=True,
                )
    summary: dict[str, Any] = {}
    for phase in ("http", "mllp"):
        medians = {
            state: {
                name: median_of(
                    [r for r in runs if r["phase"] == phase and r["metrics"] is on], name
                )
                for name in ("per_second", "p50_ms", "p99_ms", "cpu_ms")
            }
            for state, on in (("off", False), ("on", True))
        }
        cost = 1 - medians["on"]["per_second"] / medians["off"]["per_second"]
        cpu_cost = medians["on"]["cpu_ms"] / medians["off"]["cpu_ms"] - 1
        summary[phase] = {
            **medians,
            "cost": cost,
            "cpu_cost": cpu_cost,
            "met": cost <= METRICS_COST_TARGET,
        }
    hook = orjson.loads(
        subprocess.run(
            [sys.executable, str(Path(__file__).with_name("metrics_hook_cost.py")), "2"],
            env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
    )
    for phase in ("http", "mllp"):
        summary[phase]["hook_share"] = hook["cost_us"] / 1e3 / summary[phase]["off"]["cpu_ms"]
    return {
        "hook": hook,
        "duration_s": args.metrics_duration,
        "rounds": args.metrics_rounds,
        "loadgen": tool,
        "runs": runs,
        "median": summary,
        "cost_target": METRICS_COST_TARGET,
        "no_loss": all(r["verify"]["ok"] for r in runs),
    }


def print_metrics(data: dict[str, Any]) -> None:
    print(
        f"11. Metrics cost: the gateway with GATEWAY_METRICS=0 and =1 alternately, "
        f"{data['rounds']} rounds of {data['duration_s']:g} s (HTTP: {data['loadgen']}, "
        f"{CONNECTIONS} connections; MLLP: {mllp.CONNECTIONS} connections)"
    )
    print(
        f"   {'round':>5} {'metrics':<7} {'phase':<5} {'per s':>8} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'CPU ms':>7}"
    )
    for r in data["runs"]:
        print(
            f"   {r['round']:>5} {'on' if r['metrics'] else 'off':<7} {r['phase']:<5}"
            f" {r['per_second']:>8.1f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f}"
            f" {r['cpu_ms']:>7.3f}"
        )
    print("   (CPU ms: the server's user + system CPU per message, all its processes)")
    print("   Medians:")
    for phase, m in data["median"].items():
        print(
            f"     {phase:<5} off {m['off']['per_second']:8.1f}/s"
            f"  on {m['on']['per_second']:8.1f}/s"
            f"  cost {m['cost']:+.1%}  target ≤ {data['cost_target']:.0%}  {_mark(m['met'])}"
            f"   CPU/message {m['off']['cpu_ms']:.3f} -> {m['on']['cpu_ms']:.3f} ms"
            f" ({m['cpu_cost']:+.1%})"
        )
    hook = data["hook"]
    print(
        f"   Counting one message (bench/metrics_hook_cost.py, best 0.1 s window): "
        f"{hook['cost_us']:.1f} µs, i.e. "
        + ", ".join(f"{p} {m['hook_share']:.1%}" for p, m in data["median"].items())
        + " of the server's CPU per message with metrics off"
    )
    print(f"   {'PASS' if data['no_loss'] else 'FAIL'}: nothing acknowledged was lost")


def print_sweep(data: dict[str, Any]) -> None:
    print(f"Worker/thread sweep ({data['loadgen_note']}; {data['duration_s']:g} s per run)")
    print(
        f"   {'WxT':>5} {'baseline req/s':>15} {'p99 ms':>7} {'gateway req/s':>14}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6}"
    )
    for row in data["rows"]:
        b, g = row["baseline"], row["gateway"]
        print(
            f"   {row['settings']:>5} {b['per_second']:>15.1f} {b['p99_ms']:>7.2f}"
            f" {g['per_second']:>14.1f} {g['p50_ms']:>7.2f} {g['p99_ms']:>7.2f}"
            f" {row['ratio']:>6.0%}"
        )


def write(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    print(
        f"Referral gateway benchmark, {report['when']}, Python {report['python']},"
        f" {report['cpus']} CPUs\n"
    )
    if args.sweep:
        with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
            report["sweep"] = sweep_section(args, Path(tmp))
        print_sweep(report["sweep"])
        path = write("sweep.json", report)
        print(f"\nwritten {path}")
        return 0
    with contextlib.ExitStack() as stack:
        # One copy of REF's files (git archive, no git state) for sections 0, 7-8 and 10.
        before_tree = (
            stack.enter_context(slow_clients.tree_of(args.before)) if args.before else None
        )
        run_sections(args, report, before_tree)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    path = write("latest.json", report)
    print(f"\nTotal {report['elapsed_s']} s; figures written to {path}")
    http, mllp_data = report.get("http"), report.get("mllp")
    lost = (http is not None and not http["no_lost_referral"]) or (
        mllp_data is not None and not mllp_data["no_lost_message"]
    )
    undrained = "outbox_drain" in report and not report["outbox_drain"]["ok"]
    lost = lost or ("metrics" in report and not report["metrics"]["no_loss"])
    return 1 if lost or undrained else 0


def run_sections(args: argparse.Namespace, report: dict[str, Any], before: Path | None) -> None:
    """Every section not skipped, in order, each printed as it ends; ``before``: REF's tree."""
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        if args.before and not args.skip_translation_before:
            report["before_after"] = before_after.run(args.before, args.seconds, tree=before)
            before_after.report(report["before_after"])
            print()
        if not args.skip_inprocess:
            report["inprocess"] = inprocess.run(args.seconds, args.part_seconds)
            print_inprocess(report["inprocess"])
            print()
        if not args.skip_http:
            report["http"] = http_section(args, Path(tmp))
            print_http(report["http"])
    if not args.skip_writeback:
        print()
        report["writeback"] = writeback.run(args.seconds)
        writeback.report(report["writeback"])
    if not args.skip_v2:
        print()
        report["v2"] = v2.run(args.seconds, args.part_seconds)
        v2.report(report["v2"])
    if not args.skip_mllp:
        print()
        with tempfile.TemporaryDirectory(prefix="gateway-bench-mllp-") as tmp:
            report["mllp"] = mllp.run(
                Path(tmp),
                args.mllp_duration,
                args.mllp_rounds,
                args.seconds,
                args.part_seconds,
                args.mllp_profile.resolve() if args.mllp_profile else None,
                before,
            )
        report["mllp"]["before_ref"] = args.before
        mllp.report(report["mllp"])
    if not args.skip_slow_clients:
        print()
        report["slow_clients"] = slow_clients.run(
            args.before, args.slow_samples, http_seconds=args.slow_http_seconds
        )
        slow_clients.report(report["slow_clients"])
    if not args.skip_outbox_drain:
        print()
        report["outbox_drain"] = outbox_drain.run(
            args.before,
            args.drain_items,
            args.drain_outage,
            args.drain_timeout,
            args.drain_rounds,
            before,
        )
        outbox_drain.report(report["outbox_drain"])
    if args.metrics_compare:
        print()
        with tempfile.TemporaryDirectory(prefix="gateway-bench-metrics-") as tmp:
            report["metrics"] = metrics_section(args, Path(tmp))
        print_metrics(report["metrics"])


if __name__ == "__main__":
    sys.exit(main())
