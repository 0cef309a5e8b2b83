"""Pseudonymisation for evaluation exports: a keyed hash of the NHS number, age bands and
postcode districts instead of identifiers, dates of birth and addresses."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

from gateway.routing.tables import postcode_district

#: The export's age bands in years; 85 and over is the last.
AGE_BANDS = ((0, 17), (18, 24), (25, 34), (35, 44), (45, 54), (55, 64), (65, 74), (75, 84))
MIN_SECRET_BYTES = 32


class PseudonymKeyError(ValueError):
    """The pseudonymisation secret is missing or too short to resist guessing."""


def person_key(nhs_number: str, secret: bytes) -> str:
    """The same person's pseudonym in every export with one secret; not reversible without it.

    HMAC-SHA256: with only 10^9 possible NHS numbers a plain hash is reversed by trying them
    all, so the key is what protects the person.
    """
    if len(secret) < MIN_SECRET_BYTES:
        raise PseudonymKeyError(f"the pseudonym secret needs at least {MIN_SECRET_BYTES} bytes")
    digits = "".join(ch for ch in nhs_number if ch.isascii() and ch.isdigit())
    return hmac.new(secret, digits.encode("ascii"), hashlib.sha256).hexdigest()[:32]


def age_band(date_of_birth: str | None, on: date) -> str:
    """The person's age band on ``on`` (``45-54``, ``85+``), or ``not stated``."""
    if not date_of_birth or len(date_of_birth) < 10:
        return "not stated"
    try:
        born = date.fromisoformat(date_of_birth[:10])
    except ValueError:
        return "not stated"
    age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    if age < 0:
        return "not stated"
    for low, high in AGE_BANDS:
        if low <= age <= high:
            return f"{low}-{high}"
    return "85+"


def district(postcode: str | None) -> str:
    """The postcode district (``LS1``), or ``not stated``."""
    return postcode_district(postcode) or "not stated"
