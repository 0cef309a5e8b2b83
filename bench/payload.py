"""The load's request body: emis-web's new referral, its ids turned into placeholders.

Every request must carry a new referral, so the ServiceRequest identifier ("1001" in the
fixture) and the Bundle and MessageHeader ids become ``@REF@`` and ``@UID@``, filled per
request by the wrk script (post_referral.lua) or by the Python load generator (``fill``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
LOAD_SOURCE = "emis-web"
LOAD_FIXTURE = FIXTURES / LOAD_SOURCE / "01-new-referral.json"
UID = "@UID@"
REF = "@REF@"


def _service_request(bundle: dict[str, Any]) -> dict[str, Any]:
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "ServiceRequest":
            return resource  # type: ignore[no-any-return]
    raise ValueError("the fixture has no ServiceRequest")


def referral_template(fixture: Path = LOAD_FIXTURE) -> bytes:
    """The fixture, re-rendered as it was (2-space indent) with the placeholders in place."""
    bundle = orjson.loads(fixture.read_bytes())
    header = bundle["entry"][0]
    if header["resource"]["resourceType"] != "MessageHeader":
        raise ValueError("the fixture does not start with a MessageHeader")
    identifiers = _service_request(bundle)["identifier"]
    if identifiers[0]["value"] != "1001":
        raise ValueError("expected the ServiceRequest identifier value 1001 in the fixture")
    identifiers[0]["value"] = REF
    bundle["id"] = UID
    bundle["identifier"]["value"] = UID
    header["fullUrl"] = f"urn:uuid:{UID}"
    header["resource"]["id"] = UID
    return orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n"


def ids(run: int, thread: int, counter: int) -> tuple[str, str]:
    """(uid, referral identifier) for one request; post_referral.lua uses the same formats."""
    uid = f"{run:08d}-{thread:04d}-4000-8000-{counter:012d}"
    return uid, f"bench-{run}-{thread}-{counter}"


def fill(template: bytes, run: int, thread: int, counter: int) -> bytes:
    """One request body: the template with this request's ids."""
    uid, ref = ids(run, thread, counter)
    return template.replace(UID.encode(), uid.encode()).replace(REF.encode(), ref.encode())
