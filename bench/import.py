"""Bulk import throughput: `gateway import` over a directory of fixture copies with distinct
identifiers, against the same messages posted one by one through the Flask test client, in
the same run, each on a fresh SQLite store.

    .venv/bin/python bench/import.py [--files 2000] [--rounds 2] [--skip-v2]

FHIR: emis-web's new referral (bench/payload.py gives each copy new Bundle, MessageHeader and
ServiceRequest identifiers). HL7 v2: gp-v2's REF^I12 (bench/v2_payload.py: new MSH-10 and
RF1-6). The import runs in-process through the CLI entry point; its start-up (app factory,
migration check) is timed on an empty directory and taken off the rate. Then the same
directory is imported again, every message a resend. Logging is at WARNING for both sides.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["GATEWAY_LOG_LEVEL"] = "WARNING"

import payload  # noqa: E402
import v2_payload  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.cli import run_cli  # noqa: E402
from gateway.services import services  # noqa: E402
from gateway.store.database import Database  # noqa: E402
from gateway.store.keys import create_key  # noqa: E402
from gateway.store.migrate import upgrade  # noqa: E402
from gateway.store.models import RecordVersion  # noqa: E402

#: source, endpoint, media type, file suffix, one message per number
KINDS: dict[str, tuple[str, str, str, str, Callable[[int], bytes]]] = {
    "fhir": (
        payload.LOAD_SOURCE,
        "/fhir/$process-message",
        "application/fhir+json",
        ".json",
        lambda n: payload.fill(payload.referral_template(), 7, 0, n),
    ),
    "hl7v2": (
        v2_payload.V2_SOURCE,
        "/hl7v2",
        "x-application/hl7-v2+er7",
        ".hl7",
        lambda n: v2_payload.fill(v2_payload.message_template(), 7, 0, n),
    ),
}


def _versions(url: str) -> int:
    """Record versions in the store (every copy must make one)."""
    db = Database(url)
    with db.transaction() as session:
        count = session.scalar(select(func.count()).select_from(RecordVersion))
    db.dispose()
    return int(count or 0)


def _timed_import(folder: Path, url: str, source: str) -> float:
    """Seconds for `gateway import FOLDER --source SOURCE` on ``url``, in this process."""
    os.environ["GATEWAY_DATABASE_URL"] = url
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the summary table
            run_cli(["import", str(folder), "--source", source])
    except SystemExit as exc:  # exit 1: some message failed
        raise RuntimeError(f"the import failed ({exc.code})") from None
    return time.perf_counter() - started


def _timed_posts(bodies: list[bytes], url: str, source: str, path: str, media: str) -> float:
    """Seconds to POST every body through the Flask test client (app built beforehand)."""
    app = create_app({"DATABASE_URL": url})
    db = services(app).db
    upgrade(db)
    headers = {"Authorization": f"Bearer {create_key(db, 'source', source)}", "Content-Type": media}
    client = app.test_client()
    started = time.perf_counter()
    for body in bodies:
        answer = client.post(path, data=body, headers=headers)
        if answer.status_code >= 300 or (media.endswith("er7") and b"MSA|AA" not in answer.data):
            raise RuntimeError(f"POST {path} answered {answer.status_code}")
    elapsed = time.perf_counter() - started
    db.dispose()
    return elapsed


def run_kind(kind: str, files: int, rounds: int, workdir: Path) -> dict[str, float]:
    """Median files/s for import (first and again, start-up taken off), the start-up itself,
    and messages/s for the test-client posts (app built before the clock starts)."""
    source, path, media, suffix, make = KINDS[kind]
    bodies = [make(n) for n in range(files)]
    folder = workdir / f"{kind}-in"
    folder.mkdir()
    for n, body in enumerate(bodies):
        (folder / f"{n:06d}{suffix}").write_bytes(body)
    empty = workdir / f"{kind}-empty"
    empty.mkdir()
    first, again, posted, start_up = [], [], [], []
    _timed_import(empty, f"sqlite:///{workdir / kind}-warm.db", source)  # imports, compiles
    for round_number in range(rounds):
        stem = workdir / f"{kind}-{round_number}"
        url = f"sqlite:///{stem}-import.db"
        start_up.append(_timed_import(empty, f"sqlite:///{stem}-empty.db", source))
        first.append(files / (_timed_import(folder, url, source) - start_up[-1]))
        again.append(files / (_timed_import(folder, url, source) - start_up[-1]))
        if _versions(url) != files:
            raise RuntimeError("the import did not store one version per file")
        base_url = f"sqlite:///{stem}-posts.db"
        posted.append(files / _timed_posts(bodies, base_url, source, path, media))
        if _versions(base_url) != files:
            raise RuntimeError("the posts did not store one version per message")
    return {
        "import files/s": statistics.median(first),
        "re-import (resends) files/s": statistics.median(again),
        "test-client posts msg/s": statistics.median(posted),
        "import start-up s": statistics.median(start_up),
    }


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one block per kind."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-v2", action="store_true")
    args = parser.parse_args(argv)
    kinds = ["fhir"] if args.skip_v2 else ["fhir", "hl7v2"]
    with tempfile.TemporaryDirectory(prefix="bench-import-", ignore_cleanup_errors=True) as tmp:
        for kind in kinds:
            figures = run_kind(kind, args.files, args.rounds, Path(tmp))
            print(f"{kind} ({args.files} files, median of {args.rounds} rounds, SQLite)")
            for name, value in figures.items():
                print(f"  {name:<30} {value:>9.2f}")
            ratio = figures["import files/s"] / figures["test-client posts msg/s"]
            print(f"  {'import / posts':<30} {ratio:>9.2f}")


if __name__ == "__main__":
    main()
