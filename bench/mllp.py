"""Sections 7-8: HL7 v2 over MLLP end to end with the durable SQLite store, against a baseline.

First the intake alone: V2Intake.handle called in a loop on one core with a fresh SQLite
store, no sockets and no threads, with its steps timed in turn (the single-thread ceiling).
Then the real ``gateway mllp --listen gp-v2=PORT`` and the bare bench/mllp_echo.py run
alternately, each loaded by bench/mllp_load.py in its own process (4 connections, one
message at a time per connection, every message new). With a ``before`` tree (an earlier
commit's files), that tree's gateway runs too, in each round, with PYTHONPATH set to it and
its own mappings and fixture. After each run the server gets SIGTERM and its store is
counted with sqlite3: every AA must be a stored row.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import orjson
from inprocess import measure, pinned, print_breakdown
from servers import (
    BENCH,
    GATEWAY,
    HOST,
    count_rows,
    free_port,
    gateway_env,
    log_tail,
    remove_database,
    stop_process,
)
from v2_payload import V2_SOURCE, fill, message_template

from gateway.hl7v2.ack import build_ack
from gateway.hl7v2.er7 import parse
from gateway.intake.hl7v2 import MEDIA_TYPE, V2Intake, dedup_key, translate_parsed
from gateway.mapping.engine import load_mappings
from gateway.store.database import Database
from gateway.store.messages import InboundMessage
from gateway.store.migrate import upgrade

PER_SECOND_TARGET = 1000.0
P99_TARGET_MS = 25.0
CONNECTIONS = 4
WARM_UP_PER_CONNECTION = 10
KINDS = ("baseline", "gateway")
#: The gateway of the earlier commit's tree, beside "gateway" (the working tree).
BEFORE = "before"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Listener:
    """A running MLLP server process: its port, store and log."""

    kind: str
    process: subprocess.Popen[bytes]
    port: int
    db_path: Path
    log_path: Path
    log_file: IO[bytes] | None = field(repr=False, default=None)

    def cpu_seconds(self) -> float:
        """User + system CPU the process has used so far (all its threads)."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait for a graceful exit (kill after ``timeout``); the exit status."""
        return stop_process(self.process, self.log_file, timeout)

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)


def intake_alone(workdir: Path, seconds: float, part_seconds: float) -> dict[str, Any]:
    """V2Intake.handle on one core, fresh messages, a fresh SQLite store; its steps in turn.

    The store's fsync is wall time, not CPU, so the loop reports both clocks. The steps are
    the ones handle() runs for a new message; store_referral is what is left (by difference).
    """
    db_path = workdir / "intake-alone.db"
    db = Database(f"sqlite:///{db_path}")
    upgrade(db)
    mappings = load_mappings(BENCH.parent / "mappings")
    intake = V2Intake(db, mappings)  # no webhooks: the listener's default (no DESTINATIONS)
    template = message_template()
    counter = itertools.count(1)
    codes: dict[str, int] = {}

    def handle_new() -> bytes:
        ack: bytes = intake.handle(V2_SOURCE, fill(template, 0, 0, next(counter)), "mllp")
        code = ack.split(b"MSA|", 1)[1][:2].decode() if b"MSA|" in ack else "?"
        codes[code] = codes.get(code, 0) + 1
        return ack

    raw = fill(template, 0, 1, 1)
    parsed = parse(raw)
    inbound = InboundMessage(channel="mllp", source=V2_SOURCE, body=raw, content_type=MEDIA_TYPE)
    inbound.control_id = inbound.source_message_id = parsed.control_id
    inbound.dedup_key = dedup_key(parsed)
    try:
        with pinned() as cpu:
            for _ in range(20):
                handle_new()  # warm: connections, statement caches
            calls, wall, clock = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - wall < seconds:
                handle_new()
                calls += 1
            wall, clock = time.perf_counter() - wall, time.process_time() - clock
            parts = measure(
                {
                    "V2Intake.handle (whole, a new message)": handle_new,
                    "er7.parse": partial(parse, raw),
                    "translate_parsed (mapping + validation)": partial(
                        translate_parsed, mappings, V2_SOURCE, parsed, raw
                    ),
                    "build_ack": partial(build_ack, parsed),
                },
                part_seconds,
            )
    finally:
        db.dispose()
        remove_database(db_path)
        Path(f"{db_path}.writelock").unlink(missing_ok=True)
    if set(codes) != {"AA"}:
        raise SystemExit(f"FAILED: V2Intake.handle answered {codes} in the intake-alone loop")
    return {
        "cpu": cpu,
        "calls": calls,
        "per_second": calls / wall,
        "wall_ms": wall / calls * 1e3,
        "cpu_ms": clock / calls * 1e3,
        "codes": codes,
        "parts": [p.as_dict() for p in parts],
    }


def _wait_accepting(listener: Listener, timeout: float = 60.0) -> None:
    """Until the port accepts a TCP connection (the gateway migrates its store first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listener.process.poll() is not None:
            raise SystemExit(f"{listener.kind} exited during start-up:\n{listener.log_tail()}")
        try:
            with socket.create_connection((HOST, listener.port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    listener.stop()
    raise SystemExit(f"{listener.kind} not accepting after {timeout:.0f} s:\n{listener.log_tail()}")


def is_gateway(kind: str) -> bool:
    """True for a gateway run (either tree), False for the baseline."""
    return kind in ("gateway", BEFORE)


def start(kind: str, db: Path, workdir: Path, tree: Path | None = None) -> Listener:
    """The gateway's MLLP listener for gp-v2, or the baseline, on a free port. ``tree``: run
    that tree's gateway (PYTHONPATH and working directory set to it)."""
    port = free_port()
    cwd = None
    if is_gateway(kind):
        argv = [str(GATEWAY), "mllp", "--listen", f"{V2_SOURCE}={port}", "--host", HOST]
        env = gateway_env(db)
        env["GATEWAY_LOG_LEVEL"] = "WARNING"
        if tree is not None:
            env["PYTHONPATH"] = str(tree)
            cwd = tree
    else:
        argv = [sys.executable, str(BENCH / "mllp_echo.py"), "--port", str(port), "--db", str(db)]
        env = dict(os.environ)
    log_path = workdir / f"mllp-{kind}.log"
    log_file = log_path.open("ab")
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT)
    listener = Listener(kind, process, port, db, log_path, log_file)
    _wait_accepting(listener)
    return listener


def load(listener: Listener, template: Path, tag: int, seconds: float) -> dict[str, Any]:
    """bench/mllp_load.py against the listener; its JSON result."""
    argv = [
        sys.executable,
        str(BENCH / "mllp_load.py"),
        "--port",
        str(listener.port),
        "--template",
        str(template),
        "--run",
        str(tag),
        "--connections",
        str(CONNECTIONS),
        "--seconds",
        f"{seconds:g}",
        "--warm-up",
        str(WARM_UP_PER_CONNECTION),
    ]
    if is_gateway(listener.kind):
        argv.append("--check-control-id")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        listener.stop()
        raise SystemExit(
            f"FAILED: the MLLP load generator stopped ({done.returncode}):\n{done.stdout}"
            f"{done.stderr}\n{listener.kind} log tail:\n{listener.log_tail()}"
        )
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return result


def _py_spy(listener: Listener, seconds: float, profile: Path) -> subprocess.Popen[bytes]:
    """py-spy recording the GIL holder's stacks (raw, collapsed) for ``seconds``."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--mllp-profile needs py-spy (pip install py-spy)")
    argv = [spy, "record", "-p", str(listener.process.pid), "-f", "raw", "-o", str(profile)]
    argv += ["-d", str(max(1, int(seconds))), "-r", "100", "--gil"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_one(
    kind: str,
    workdir: Path,
    template: Path,
    tag: int,
    seconds: float,
    profile: Path | None = None,
    tree: Path | None = None,
) -> dict[str, Any]:
    """Start one server (``tree``: that tree's gateway), load it, stop it, count its store
    (``profile``: py-spy it)."""
    db = workdir / f"mllp-{kind}-{tag}.db"
    listener = start(kind, db, workdir, tree)
    log_offset = listener.log_path.stat().st_size
    spy: subprocess.Popen[bytes] | None = None
    try:
        cpu_before = listener.cpu_seconds()
        if profile is not None:
            spy = _py_spy(listener, seconds, profile)
        result = load(listener, template, tag, seconds)
        cpu = listener.cpu_seconds() - cpu_before
        if spy is not None:
            spy.wait(60)
    finally:
        exit_status = listener.stop()
    with listener.log_path.open("rb") as log:
        log.seek(log_offset)
        log_lines = log.read().decode(errors="replace").splitlines()
    out: dict[str, Any] = {"kind": kind, **result, "exit_status": exit_status}
    out["cpu_ms_per_message"] = cpu / result["messages"] * 1e3 if result["messages"] else 0.0
    out["log_problems"] = sum(1 for ln in log_lines if " WARNING " in ln or " ERROR " in ln)
    out["stored"] = count_rows(db)
    if is_gateway(kind):
        out["messages_stored"] = count_rows(db, "messages")
        out["not_accepted_messages"] = count_rows(db, "messages WHERE status != 'accepted'")
    aa = result["codes"].get("AA", 0) + result["warm_up_codes"].get("AA", 0)
    out["aa_total"] = aa
    out["verify"] = verify(out)
    remove_database(db)
    Path(f"{db}.writelock").unlink(missing_ok=True)
    not_aa = {
        code: n
        for codes in (result["warm_up_codes"], result["codes"])
        for code, n in codes.items()
        if code != "AA"
    }
    if not_aa or result["wrong_control_id"]:
        tail = "\n".join(log_lines[-30:])
        raise SystemExit(
            f"FAILED: {kind} answered {not_aa or 'AA'} ({result['wrong_control_id']} with the"
            f" wrong MSA-2); first: {result['first_bad']}\nlog tail:\n{tail}"
        )
    return out


def verify(out: dict[str, Any]) -> dict[str, Any]:
    """No lost message: stored rows equal the AA count (a connection has at most 1 in flight).

    The generator waits for every ACK before it stops, so the counts should match exactly;
    a stored row beyond the AA count (at most one per connection) would be a message whose
    ACK was lost, never a lost message.
    """
    in_flight = out["stored"] - out["aa_total"]
    problems = []
    if in_flight < 0:
        problems.append(f"LOST: {-in_flight} acknowledged messages are not stored")
    if in_flight > CONNECTIONS:
        problems.append(f"{in_flight} stored beyond the AA count (at most {CONNECTIONS})")
    if out.get("not_accepted_messages"):
        problems.append(f"{out['not_accepted_messages']} messages not accepted")
    if "messages_stored" in out and out["messages_stored"] != out["stored"]:
        problems.append(f"{out['messages_stored']} messages for {out['stored']} referrals")
    if out["exit_status"] != 0:
        problems.append(f"exit status {out['exit_status']} after SIGTERM")
    return {"in_flight": in_flight, "ok": not problems, "problems": problems}


def run(
    workdir: Path,
    seconds: float,
    rounds: int,
    alone_seconds: float,
    part_seconds: float,
    profile: Path | None = None,
    before: Path | None = None,
) -> dict[str, Any]:
    """The intake alone, then baseline and gateway alternately, ``rounds`` each: medians,
    ratio, targets, loss check. ``profile``: py-spy the gateway's last run into that file.
    ``before``: an earlier commit's tree, whose gateway runs in each round too (its own
    fixture's message, its own mappings)."""
    alone = intake_alone(workdir, alone_seconds, part_seconds)
    template = workdir / "v2-template.hl7"
    template.write_bytes(message_template())
    kinds: tuple[str, ...] = KINDS
    templates = {kind: template for kind in KINDS}
    if before is not None:
        kinds = ("baseline", BEFORE, "gateway")
        templates[BEFORE] = workdir / "v2-template-before.hl7"
        fixture = before / "fixtures" / V2_SOURCE / "01-new-referral.hl7"
        templates[BEFORE].write_bytes(message_template(fixture))
    runs = []
    tag = 0
    for round_no in range(1, rounds + 1):
        for kind in kinds:
            tag += 1
            spy = profile if kind == "gateway" and round_no == rounds else None
            tree = before if kind == BEFORE else None
            one = run_one(kind, workdir, templates[kind], tag, seconds, spy, tree)
            one["round"] = round_no
            runs.append(one)
            rate, p99 = one["per_second"], one["p99_ms"]
            print(f"  ... mllp {kind:<8}: {rate:7.1f} msg/s, p99 {p99:.1f} ms", file=sys.stderr)
    median: dict[str, dict[str, float]] = {}
    for kind in kinds:
        mine = [r for r in runs if r["kind"] == kind]
        median[kind] = {
            name: float(statistics.median(r[name] for r in mine))
            for name in ("per_second", "p50_ms", "p99_ms", "max_ms", "cpu_ms_per_message")
        }
    return {
        "source": V2_SOURCE,
        "before_tree": str(before) if before else None,
        "intake_alone": alone,
        "profile": str(profile) if profile else None,
        "connections": CONNECTIONS,
        "warm_up_per_connection": WARM_UP_PER_CONNECTION,
        "duration_s": seconds,
        "runs": runs,
        "median": median,
        "ratio": median["gateway"]["per_second"] / median["baseline"]["per_second"],
        "per_second_target": PER_SECOND_TARGET,
        "p99_target_ms": P99_TARGET_MS,
        "no_lost_message": all(r["verify"]["ok"] for r in runs),
    }


def _mark(met: bool) -> str:
    return "met" if met else "MISSED"


def report_alone(alone: dict[str, Any]) -> None:
    """The intake-alone lines of section 7."""
    print(
        f"   Intake alone: V2Intake.handle in a loop, pinned to CPU {alone['cpu']}, fresh SQLite"
        " store, no sockets"
    )
    print(
        f"     {alone['per_second']:,.0f} messages/s on one thread: {alone['wall_ms']:.2f} ms"
        f" wall, {alone['cpu_ms']:.2f} ms CPU per message (the rest is waiting for fsync)"
    )
    print_breakdown(
        alone["parts"],
        44,
        decimals=0,
        heading="step (timed in turn with the whole)",
        mean="mean µs",
        rest="store_referral + rest (by difference)",
    )


def report_before_after(data: dict[str, Any]) -> None:
    """The gateway of the earlier commit (before) against the working tree's (after)."""
    med = data["median"]
    print(
        f"\n   Before ({data.get('before_ref') or data['before_tree']}) and after (working tree),"
        " the same run, alternating; medians:"
    )
    print(f"     {'measure':<22}{'before':>10}{'after':>10}{'change':>9}")
    for name, label in (
        ("per_second", "messages/s"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("cpu_ms_per_message", "server CPU ms/msg"),
    ):
        before, after = med[BEFORE][name], med["gateway"][name]
        change = f"{(after / before - 1) * 100:+.0f} %" if before else ""
        print(f"     {label:<22}{before:>10.2f}{after:>10.2f}{change:>9}")


def report(data: dict[str, Any]) -> None:
    """Print sections 7 and 8."""
    print(
        f"7. MLLP end to end: gateway mllp --listen {data['source']}=PORT with a SQLite store"
        " (WAL, synchronous=FULL)"
    )
    report_alone(data["intake_alone"])
    print(
        "\n   Over MLLP, against the bare baseline bench/mllp_echo.py (same durability), load from"
    )
    print(
        f"   bench/mllp_load.py in its own process: {data['connections']} connections, each"
        " sending one message and waiting"
    )
    print(
        f"   for its ACK; every MSH-10 and RF1-6 new; {data['warm_up_per_connection']} untimed"
        f" messages per connection, then {data['duration_s']:g} s timed"
    )
    print(
        f"   {'round':>5} {'server':<9} {'msg/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
        f" {'CPU ms/msg':>10}  ACK codes (timed)"
    )
    for r in data["runs"]:
        codes = " ".join(f"{c}={n}" for c, n in sorted(r["codes"].items()))
        print(
            f"   {r['round']:>5} {r['kind']:<9} {r['per_second']:>8.1f} {r['p50_ms']:>7.2f}"
            f" {r['p99_ms']:>7.2f} {r['max_ms']:>7.1f} {r['cpu_ms_per_message']:>10.2f}  {codes}"
        )
    med = data["median"]
    print("\n   Medians:")
    for kind, m in med.items():
        print(
            f"     {kind:<9} {m['per_second']:>8.1f} msg/s   p50 {m['p50_ms']:6.2f} ms"
            f"   p99 {m['p99_ms']:6.2f} ms   max {m['max_ms']:6.1f} ms"
            f"   server CPU {m['cpu_ms_per_message']:.2f} ms/msg"
        )
    gw = med["gateway"]
    print(f"     gateway/baseline throughput: {data['ratio']:.0%}")
    print(
        f"     gateway throughput: {gw['per_second']:.1f} msg/s over {data['connections']}"
        f" connections   target ≥ {data['per_second_target']:,.0f}"
        f"   {_mark(gw['per_second'] >= data['per_second_target'])}"
    )
    print(
        f"     gateway p99: {gw['p99_ms']:.2f} ms   target ≤ {data['p99_target_ms']:g} ms"
        f"   {_mark(gw['p99_ms'] <= data['p99_target_ms'])}"
    )
    print("   (CPU ms/msg: the server process's user+system CPU during the load, per timed")
    print("   message; the warm-up is included in the store counts below, not in the timings)")
    if BEFORE in med:
        report_before_after(data)

    print("\n8. No lost message: each store counted with sqlite3 after SIGTERM")
    print(f"   stored must equal every AA received (warm-up + timed), ± ≤ {data['connections']}")
    print(
        f"   {'round':>5} {'server':<9} {'AA':>6} {'stored':>6} {'inflight':>8} {'msgs':>6}"
        f" {'not acc':>7} {'log W/E':>7} {'exit':>4}  result"
    )
    for r in data["runs"]:
        result = "ok" if r["verify"]["ok"] else "FAIL " + "; ".join(r["verify"]["problems"])
        msgs = r.get("messages_stored", "-")
        not_acc = r.get("not_accepted_messages", "-")
        print(
            f"   {r['round']:>5} {r['kind']:<9} {r['aa_total']:>6} {r['stored']:>6}"
            f" {r['verify']['in_flight']:>8} {msgs:>6} {not_acc:>7} {r['log_problems']:>7}"
            f" {r['exit_status']!s:>4}  {result}"
        )
    print("   (msgs: rows in the gateway's messages table; not acc: those not 'accepted';")
    print("   log W/E: WARNING and ERROR lines the server logged during the run)")
    verdict = "PASS" if data["no_lost_message"] else "FAIL"
    print(f"   {verdict}: every AA-acknowledged message is stored")
    if data["profile"]:
        print(f"\n   py-spy (--gil, raw) of the gateway's last run: {data['profile']}")
