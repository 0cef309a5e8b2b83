"""The key that signs the web pages' session cookies and CSRF tokens."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

MIN_LENGTH = 32


def secret_key(configured: str, path: str) -> str:
    """The configured key, else the one kept in ``path`` (made 0600 on first use)."""
    if configured:
        if len(configured) < MIN_LENGTH:
            raise ValueError(f"SECRET_KEY must be at least {MIN_LENGTH} characters")
        return configured
    file = Path(path)
    try:
        return file.read_text().strip()
    except FileNotFoundError:
        pass
    file.parent.mkdir(parents=True, exist_ok=True)
    made = secrets.token_urlsafe(48)
    try:
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker made it first
        return file.read_text().strip()
    with os.fdopen(descriptor, "w") as out:
        out.write(made)
    return made
