"""``gateway import``: a directory of messages through the one intake pipeline, as if sent.

Every file goes to the same intake the HTTP channels use (built by the app factory, so the
routing, consent and webhooks are the same): FHIR JSON or XML Bundles and resources one
message a file; HL7 v2 ER7 files cut into their messages (a batch file, or several messages
one after another), each taken on its own. Idempotency is the intake's: importing a directory
twice stores nothing new the second time (resends). A refused message is kept raw with its
status, as if it had been answered. The output names files and the refused element, never
message content.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from gateway.commands import operator
from gateway.commands.jobs import summary_table, with_progress
from gateway.errors import GatewayError, MappingError, PayloadTooLarge
from gateway.hl7v2 import batch
from gateway.intake.hl7v2 import MEDIA_TYPE
from gateway.services import Services
from gateway.store.audit import record_event
from gateway.store.messages import KEPT_PREFIX
from gateway.store.migrate import upgrade

#: What each message comes to, in the order the summary names them.
OUTCOMES = ("accepted", "resent", "rejected", "failed")
#: The channel names imported messages are kept under (the message browser shows them).
CHANNELS = {"fhir": "fhir-import", "hl7v2": "hl7v2-import"}
_MEDIA = {"fhir-json": "application/fhir+json", "fhir-xml": "application/fhir+xml"}


@dataclass(frozen=True)
class Taken:
    """What happened to one message of a file: its outcome and, when refused, what and where."""

    outcome: str
    problem: str = ""


def outcome_of(error: GatewayError | None, repeat: str | None = None) -> Taken:
    """A message's outcome from the intake's refusal (None when stored) and the store's repeat."""
    if error is None:
        return Taken("resent" if repeat else "accepted")
    outcome = "failed" if error.status >= 500 else "rejected"
    return Taken(outcome, f"{error.issue_code} at {error.expression or 'the message'}")


def fhir_kind(path: Path, raw: bytes) -> str:
    """fhir-xml for an .xml file or one starting with '<', else fhir-json."""
    if path.suffix.lower() == ".xml" or raw.lstrip()[:1] == b"<":
        return "fhir-xml"
    return "fhir-json"


def v2_messages(raw: bytes) -> list[bytes]:
    """The messages of an ER7 file, each exactly as written (the file itself when it has none)."""
    found = [message for part in batch.split(raw).batches for message in part.messages]
    return found or [raw]


class Importer:
    """Takes the files of one source through the app's intakes, one file at a time."""

    def __init__(self, attached: Services, source: str, channel: str, max_body: int) -> None:
        self.attached = attached
        self.source = source
        self.channel = channel
        self.max_body = max_body

    def take_file(self, path: Path) -> tuple[str, list[Taken]]:
        """The file's kind and what happened to each of its messages."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            return "unreadable", [Taken("failed", f"not read: {exc.strerror or 'error'}")]
        over = (
            PayloadTooLarge(f"the file is over the {self.max_body}-byte limit")
            if len(raw) > self.max_body
            else None
        )
        if self.channel == "fhir":
            kind = fhir_kind(path, raw)
            return kind, [self._fhir(raw[:KEPT_PREFIX] if over else raw, _MEDIA[kind], over)]
        if over is not None:
            return "hl7v2", [self._v2_too_large(raw[:KEPT_PREFIX], over)]
        return "hl7v2", [self._v2(message) for message in v2_messages(raw)]

    def _v2_too_large(self, prefix: bytes, over: GatewayError) -> Taken:
        """A file over the limit, kept truncated with its AR, as POST /hl7v2 keeps one."""
        try:
            self.attached.v2intake.refuse_unread(
                self.source,
                prefix,
                MEDIA_TYPE,
                channel=CHANNELS["hl7v2"],
                error=over,
                truncated=True,
            )
        except GatewayError as exc:  # the store is away: not kept
            return outcome_of(exc)
        return outcome_of(over)

    def _fhir(self, body: bytes, media: str, over: GatewayError | None) -> Taken:
        """One FHIR message taken; a refusal is raised by the intake once it is kept."""
        try:
            received = self.attached.intake.receive(
                self.source, body, media, channel=CHANNELS["fhir"], over_limit=over
            )
        except GatewayError as exc:
            return outcome_of(exc)
        return outcome_of(None, received.stored.repeat)

    def _v2(self, message: bytes) -> Taken:
        """One HL7 v2 message taken; its ACK is kept with it, as over MLLP."""
        try:
            outcome = self.attached.v2intake.take(self.source, message, CHANNELS["hl7v2"])
        except GatewayError as exc:  # the store went away while answering a refusal
            return outcome_of(exc)
        repeat = outcome.stored.repeat if outcome.stored is not None else None
        return outcome_of(outcome.error, repeat)


def files_in(directory: Path, pattern: str) -> list[Path]:
    """The regular files matching ``pattern`` under ``directory``, dot files left out, sorted."""
    return sorted(
        path for path in directory.glob(pattern) if path.is_file() and not path.name.startswith(".")
    )


def _services(migrate: bool) -> tuple[Services, int]:
    """The app's services (the same intakes the HTTP channels use) and the body limit."""
    from gateway.app import create_app
    from gateway.services import services

    try:
        app = create_app()
    except MappingError as exc:
        raise click.ClickException(f"mapping error: {exc}") from None
    attached = services(app)
    if migrate:
        upgrade(attached.db)
    return attached, int(app.config["MAX_BODY_BYTES"])


def _problems(path: Path, directory: Path, taken: list[Taken]) -> Iterator[str]:
    """One line per refused or failed message: the file (and message number), what, where."""
    name = path.relative_to(directory)
    for number, item in enumerate(taken, start=1):
        if item.outcome in ("rejected", "failed"):
            which = f" message {number}" if len(taken) > 1 else ""
            yield f"{item.outcome:<8}  {name}{which}: {item.problem}"


@click.command("import")
@click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR"
)
@click.option("--source", required=True, help="The source system the files came from.")
@click.option(
    "--channel",
    type=click.Choice(["fhir", "hl7v2"]),
    default=None,
    help="What the files hold (default: what the source's mapping reads).",
)
@click.option(
    "--glob", "pattern", default="*", show_default=True, help="Which files ('**/*.hl7' recurses)."
)
@click.option("--verbose", is_flag=True, help="Log each message as the intake does.")
@click.option("--no-migrate", is_flag=True, help="Do not upgrade the database first.")
def import_command(
    directory: Path,
    source: str,
    channel: str | None,
    pattern: str,
    verbose: bool,
    no_migrate: bool,
) -> None:
    """Take every file in DIR as if SOURCE had sent it, then print a summary table.

    Exits 1 when any message failed (a fault of the gateway, or a file not read); refused
    messages are kept, listed by file and element, and counted as rejected.
    """
    attached, max_body = _services(migrate=not no_migrate)
    if not verbose:  # the summary says it all; faults are still logged
        logging.getLogger("gateway.intake").setLevel(logging.ERROR)
    mapping = attached.mappings.get(source)
    if mapping is None:
        raise click.ClickException(f"no mapping for source {source!r}: {sorted(attached.mappings)}")
    reads = "hl7v2" if mapping.compiled.format == "hl7v2" else "fhir"
    if channel is not None and channel != reads:
        raise click.ClickException(f"source {source!r} sends {reads}, not {channel}")
    importer = Importer(attached, source, reads, max_body)
    files = files_in(directory, pattern)
    counts: Counter[tuple[str, str]] = Counter()
    problems: list[str] = []
    for path in with_progress(files, len(files), f"importing {len(files)} file(s)"):
        kind, taken = importer.take_file(path)
        counts.update((kind, item.outcome) for item in taken)
        problems.extend(_problems(path, directory, taken))
    for line in problems:
        click.echo(line)
    table = {f"{kind} {outcome}": n for (kind, outcome), n in counts.items()}
    click.echo(summary_table(table, heading="kind and outcome"))
    totals = {o: sum(n for (_, outcome), n in counts.items() if outcome == o) for o in OUTCOMES}
    record_event(
        attached.db,
        operator(),
        "import",
        "directory",
        str(directory),
        {"source": source, "files": len(files), **totals},
    )
    if totals["failed"]:
        sys.exit(1)
