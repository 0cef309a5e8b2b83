"""The closed-loop referral status machine (HL7 Gravity / BSeR Task states, as PRSB uses them).

requested -> accepted | rejected | cancelled; accepted -> in-progress | on-hold | completed |
failed | cancelled; in-progress <-> on-hold; in-progress / on-hold -> completed | failed |
cancelled; any -> entered-in-error. rejected, cancelled, completed and failed are terminal.
"""

from __future__ import annotations

from gateway.errors import Conflict

STATES = (
    "requested",
    "accepted",
    "rejected",
    "in-progress",
    "on-hold",
    "completed",
    "failed",
    "cancelled",
    "entered-in-error",
)
TERMINAL = frozenset({"rejected", "cancelled", "completed", "failed", "entered-in-error"})
_NEXT: dict[str, frozenset[str]] = {
    "requested": frozenset({"accepted", "rejected", "cancelled"}),
    "accepted": frozenset({"in-progress", "on-hold", "completed", "failed", "cancelled"}),
    "in-progress": frozenset({"on-hold", "completed", "failed", "cancelled"}),
    "on-hold": frozenset({"in-progress", "completed", "failed", "cancelled"}),
}


def allowed(current: str, new: str) -> bool:
    """Whether a referral may move from ``current`` to ``new`` (staying put is allowed)."""
    if new == "entered-in-error" or (new == current and current not in TERMINAL):
        return True
    return new in _NEXT.get(current, frozenset())


def check_transition(current: str, new: str) -> None:
    """Raise Conflict (409) naming both states when the move is not allowed."""
    if not allowed(current, new):
        raise Conflict(f"a referral that is {current} cannot become {new}", expression="status")
