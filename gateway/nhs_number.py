"""NHS number checks: ten digits with a modulus-11 check digit."""

from __future__ import annotations

from operator import mul

_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)


def check_digit(first_nine: str) -> int | None:
    """The modulus-11 check digit for nine digits, or None when no valid digit exists."""
    if len(first_nine) != len(_WEIGHTS):
        raise ValueError(f"an NHS number check digit is for nine digits, not {len(first_nine)}")
    total = sum(map(mul, map(int, first_nine), _WEIGHTS))
    digit = 11 - total % 11
    if digit == 11:
        return 0
    return None if digit == 10 else digit


def is_valid(number: str) -> bool:
    """True when ``number`` is ten digits whose last is the right check digit."""
    # ASCII digits only: str.isdigit() also holds for superscripts such as "²", which int()
    # then refuses.
    if len(number) != 10 or not (number.isascii() and number.isdigit()):
        return False
    return check_digit(number[:9]) == int(number[9])


def normalise(raw: str) -> str:
    """Strip the spaces and hyphens people type into NHS numbers (999 123 4567)."""
    return raw.replace(" ", "").replace("-", "")


def synthetic(serial: int) -> str:
    """The ``serial``-th valid synthetic NHS number in the 999 test range (for fixtures)."""
    found = -1
    stem = 999000000
    while True:
        digit = check_digit(str(stem))
        if digit is not None:
            found += 1
            if found == serial:
                return f"{stem}{digit}"
        stem += 1
