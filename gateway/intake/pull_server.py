"""A source's FHIR server as pull mode reads it: search pages, next links, references.

Every request carries the configured token, and nothing is fetched from another host: a next
link is followed with the configured scheme and port, a reference to another server is left
alone. Any failure is a ``PullError`` naming the server's reason (never message content).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import orjson
import requests

FHIR_JSON = "application/fhir+json"

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_FRACTION = re.compile(r"(\.\d{6})\d+")


class PullError(Exception):
    """This round cannot go on (the server or the store failed); try again next round."""


def fhir_instant(value: datetime) -> str:
    """``value`` as a FHIR instant in UTC with milliseconds, rounded down."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_instant(value: Any) -> datetime | None:
    """A FHIR instant (meta.lastUpdated) as an aware datetime, or None if it is not one."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def references(node: Any) -> Iterator[str]:
    """Every literal reference string in a resource, in document order."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            elif key != "contained":
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def outcome_text(body: Any) -> str:
    """The diagnostics of an OperationOutcome body, joined, or '' when it is not one."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    parts = [
        str(issue.get("diagnostics") or issue.get("details", {}).get("text") or issue.get("code"))
        for issue in body.get("issue") or []
        if isinstance(issue, dict)
    ]
    return "; ".join(parts)[:1000]


class SourceServer:
    """The source's FHIR server at ``base``, read with ``token`` through ``session``."""

    def __init__(
        self, base: str, token: str | None, session: requests.Session, timeout: float
    ) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.session = session
        self.timeout = timeout
        self._origin = urlsplit(self.base)

    def next_page(self, page: dict[str, Any], seen: set[str]) -> str | None:
        """The page's next link, if it stays on the configured server.

        A server behind a proxy may write its links with another scheme or port (HAPI
        writes http:// links when reached over https): the link is followed with the
        configured scheme and port, and never to another host, so the token stays put.
        """
        for link in page.get("link") or []:
            if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
                there = urlsplit(urljoin(self.base + "/", str(link["url"])))
                if there.hostname != self._origin.hostname:
                    raise PullError(
                        f"the next link points at {there.hostname}, not "
                        f"{self._origin.hostname}; not followed"
                    )
                origin = self._origin
                url = urlunsplit((origin.scheme, origin.netloc, there.path, there.query, ""))
                if url in seen:
                    raise PullError("the next link repeats a page already read")
                return url
        return None

    def local_key(self, reference: str) -> str | None:
        """``Type/id`` for a reference to a resource on this server, else None (contained,
        urn:, logical, conditional, or on another server)."""
        if reference.startswith(("http://", "https://")):
            if not reference.startswith(self.base + "/"):
                return None
            reference = reference[len(self.base) + 1 :]
        if "?" in reference or reference.startswith(("#", "urn:")):
            return None
        parts = reference.split("/")
        if len(parts) < 2 or not _TYPE.match(parts[0]) or not _ID.match(parts[1]):
            return None
        return f"{parts[0]}/{parts[1]}"

    def headers(self) -> dict[str, str]:
        """The headers of every request: FHIR JSON, no cached answers, the token if any."""
        headers = {"Accept": FHIR_JSON, "Cache-Control": "no-cache"}
        token = self.token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def send(self, url: str, params: list[tuple[str, str]] | None) -> requests.Response:
        """GET ``url``; a network failure is a PullError naming its kind and the path."""
        try:
            return self.session.get(
                url, params=params, headers=self.headers(), timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise PullError(f"GET {urlsplit(url).path}: {type(exc).__name__}") from exc

    def get(self, url: str, params: list[tuple[str, str]] | None) -> dict[str, Any]:
        """A search page as JSON; any failure is a PullError naming the server's reason."""
        response = self.send(url, params)
        body = _json(response)
        if response.status_code != 200:
            reason = outcome_text(body) or response.reason or ""
            raise PullError(f"GET {urlsplit(url).path}: {response.status_code} {reason}".strip())
        if not isinstance(body, dict):
            raise PullError(f"GET {urlsplit(url).path}: the answer is not FHIR JSON")
        return body

    def read(self, key: str) -> tuple[str, dict[str, Any]] | None:
        """One referenced resource, or None when the server has no such resource."""
        url = f"{self.base}/{key}"
        response = self.send(url, None)
        if response.status_code in (404, 410):
            return None
        body = _json(response)
        if response.status_code != 200:
            reason = outcome_text(body) or response.reason or ""
            raise PullError(f"GET {key}: {response.status_code} {reason}".strip())
        if not isinstance(body, dict) or body.get("resourceType") != key.split("/")[0]:
            raise PullError(f"GET {key}: the answer is not that resource")
        return url, body


def _json(response: requests.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
