"""Console test helpers: sign in, post a form with its CSRF token, break and mend a mapping."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from support import Gateway

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
#: The mapping mistake the tests make and mend: EMIS Web configured for the wrong Bundle type.
RIGHT, WRONG = "accepts: [message]", "accepts: [transaction]"


def csrf_of(html: str) -> str:
    """The CSRF token of the first form in a page."""
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: FlaskClient, key: str) -> None:
    """Sign ``client`` in to the console with ``key``."""
    token = csrf_of(client.get("/console/sign-in").get_data(as_text=True))
    answer = client.post("/console/sign-in", data={"key": key, "csrf_token": token})
    assert answer.status_code == 302, answer.get_data(as_text=True)


def post_form(client: FlaskClient, page: str, action: str, **fields: str) -> Any:
    """POST a console form with the CSRF token read from ``page``."""
    token = csrf_of(client.get(page).get_data(as_text=True))
    return client.post(action, data={"csrf_token": token, **fields})


def edit_mapping(folder: Path, old: str, new: str) -> None:
    """Replace ``old`` with ``new`` in the emis-web mapping (the file's change time moves)."""
    path = folder / "emis-web" / "mapping.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@dataclass
class Console:
    """A gateway, its copied mappings folder, and an admin and a viewer key."""

    gateway: Gateway
    mappings: Path
    admin_key: str
    viewer_key: str

    def client(self, key: str | None = None) -> FlaskClient:
        """A fresh client (its own cookies), signed in with ``key`` when given."""
        client = self.gateway.app.test_client()
        if key is not None:
            sign_in(client, key)
        return client
