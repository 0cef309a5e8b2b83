"""The MLLP load's message: gp-v2's new referral (REF^I12), its ids turned into placeholders.

Every message must be new to the gateway, so MSH-10 (control id "GP0001" in the fixture)
becomes ``@CID@`` and RF1-6.1 (referral identifier "GPREF1001") becomes ``@REF@``, filled per
message by the load generator (bench/mllp_load.py). This module imports nothing from the
gateway: the load generator runs in its own process and should start fast.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
V2_SOURCE = "gp-v2"
V2_FIXTURE = ROOT / "fixtures" / V2_SOURCE / "01-new-referral.hl7"
CID = b"@CID@"
REF = b"@REF@"
_FIXTURE_CID = b"|GP0001|"
_FIXTURE_REF = b"|GPREF1001^"


def message_template(fixture: Path = V2_FIXTURE) -> bytes:
    """The fixture with placeholders for MSH-10 and RF1-6.1 (each must occur exactly once)."""
    raw = fixture.read_bytes()
    for value in (_FIXTURE_CID, _FIXTURE_REF):
        if raw.count(value) != 1:
            raise ValueError(f"expected {value!r} exactly once in {fixture}")
    return raw.replace(_FIXTURE_CID, b"|" + CID + b"|").replace(_FIXTURE_REF, b"|" + REF + b"^")


def ids(run: int, conn: int, counter: int) -> tuple[str, str]:
    """(MSH-10 control id, RF1-6.1 referral identifier) of one message.

    The control id stays within 20 characters (the ST length of MSH-10 before v2.5).
    """
    return f"B{run}-{conn}-{counter}", f"BENCH-{run}-{conn}-{counter}"


def fill(template: bytes, run: int, conn: int, counter: int) -> bytes:
    """One message: the template with this message's ids."""
    cid, ref = ids(run, conn, counter)
    return template.replace(CID, cid.encode()).replace(REF, ref.encode())
