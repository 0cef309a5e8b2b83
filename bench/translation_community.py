"""Translation rate of a community referral per core, beside a UK Core FHIR referral.

Times ``translate_document`` (decode the JSON, check it against the community schema, run
the generated mapping, data quality, record validation) on each community fixture, and the
self-referral form's document, in CPU seconds of this process: a rate per core. Prints JSON.

    .venv/bin/python bench/translation_community.py [seconds per case, default 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
from translate_rate import rate  # bench/ is first on sys.path when run as a script

from gateway.intake.community import translate_document
from gateway.intake.fhir import translate_message
from gateway.mapping.engine import load_mappings

ROOT = Path(__file__).resolve().parent.parent
CASES = (
    ("community", "01-housing-officer.json"),
    ("community", "03-vcse.json"),
    ("self-referral", "01-full-form.json"),
)


def main() -> None:
    """Print {"<source>/<fixture>": translations per CPU second, ...}."""
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    mappings = load_mappings(ROOT / "mappings")
    out: dict[str, float] = {}
    for source, name in CASES:
        body = (ROOT / "fixtures" / source / name).read_bytes()
        out[f"{source}/{name}"] = round(
            rate(lambda s=source, b=body: translate_document(mappings, s, b, None), seconds)
        )
    fhir = (ROOT / "fixtures" / "uk-core" / "01-new-referral.json").read_bytes()
    out["uk-core/01-new-referral.json (FHIR, for scale)"] = round(
        rate(lambda: translate_message(mappings, "uk-core", fhir, "application/fhir+json"), seconds)
    )
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
