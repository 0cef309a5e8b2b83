"""FHIR write-back: an outcome goes to the referral's source FHIR server as one Bundle.

Transaction mode (a server like HAPI)
    1. ``GET [base]/Task?identifier=<referral-task system>|<referral id>`` with
       ``Cache-Control: no-cache`` (HAPI caches searches for 60 s). No Task: the Bundle
       creates it conditionally. One Task: the Bundle PUTs ``Task/<id>`` with If-Match on
       its version (meta.versionId, else the ETag of a read), keeping its earlier outputs.
       Several: permanent, since someone must merge them on the server first.
    2. ``POST [base]`` with the transaction. 409 or 412 (a version conflict, or a
       conditional create that matched several) means the Task is read again and the
       Bundle sent once more; a second 409/412 is transient.
    Every other entry is a conditional create on its business identifier, so a resend of
    the same outcome makes the server answer 200 for them, never a duplicate.

Message mode (BaRS)
    ``POST [base]/$process-message`` with the message Bundle, X-Request-Id (new per attempt)
    and X-Correlation-Id (one per referral). There is no Task to read first.

Answers
    2xx is delivered, after a look at the transaction-response's entries (any 4xx entry is
    permanent) or the response MessageHeader's code; the outbox item keeps a short summary
    ("200 transaction-response: Task 201, Observation 201, ..."), never patient data.
    429 (Retry-After in seconds or as an HTTP date), 408, 425, 5xx, timeouts and connection
    failures are transient. Any other 4xx (400, 401, 403, 404, 422, ...) and redirects are
    permanent, with the first 4 KB of the answer kept on the item. Bodies are never logged,
    and failure reasons (which the worker logs) name only the status, the OperationOutcome
    issue code and a HAPI-nnnn code.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson
import requests

from gateway.errors import PermanentDeliveryError, TransientDeliveryError
from gateway.outbound.destinations import Destinations, Writeback
from gateway.outbound.fhir.bundle import build_message, build_transaction
from gateway.outbound.fhir.names import GATEWAY, TASK_SYSTEM
from gateway.outbound.fhir.validation import validate
from gateway.outbound.retry import retry_after
from gateway.store.outbox import Claimed

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
#: How much of a server's answer is kept on the outbox item.
KEEP_BYTES = 4096
#: Retry-After values beyond a day are cut to a day, so one answer cannot park an item forever.
_TRANSIENT_4XX = frozenset({408, 425, 429})
_CONFLICT = frozenset({409, 412})
_HAPI_CODE = re.compile(r"HAPI-\d{4}")
_ETAG = re.compile(r'^(?:W/)?"([^"]+)"$')
_CORRELATION = uuid.uuid5(uuid.NAMESPACE_URL, f"{GATEWAY}/correlation")


@dataclass(frozen=True)
class FoundTask:
    """The referral's Task as the server holds it."""

    id: str
    version: str | None
    outputs: list[dict[str, Any]] = field(default_factory=list)


def _kept(response: requests.Response) -> str | None:
    """The first 4 KB of the answer, for the outbox item (never for logs)."""
    body = response.content[:KEEP_BYTES]
    return body.decode("utf-8", "replace") if body else None


def _json(response: requests.Response) -> Any:
    """The answer as JSON, or None when it is not JSON."""
    try:
        return orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return None


def _what_failed(response: requests.Response) -> str:
    """The OperationOutcome's first issue code and any HAPI-nnnn code: safe to log."""
    bits = []
    body = _json(response)
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        issues = body.get("issue") or [{}]
        code = issues[0].get("code") if isinstance(issues[0], dict) else None
        bits.append(f"OperationOutcome {code}" if isinstance(code, str) else "OperationOutcome")
    hapi = _HAPI_CODE.search(response.content[:KEEP_BYTES].decode("utf-8", "replace"))
    if hapi:
        bits.append(hapi.group())
    return f" ({', '.join(bits)})" if bits else ""


def _fail(response: requests.Response, what: str) -> NoReturn:
    """Raise the delivery error an unsuccessful answer calls for."""
    status = response.status_code
    reason = f"{what}: HTTP {status}{_what_failed(response)}"
    body = _kept(response)
    if status in _TRANSIENT_4XX or status >= 500:
        wait = retry_after(response.headers.get("Retry-After"))
        raise TransientDeliveryError(reason, retry_after=wait, response=body)
    if 300 <= status < 400:
        raise PermanentDeliveryError(
            f"{what}: HTTP {status} redirect (not followed)", response=body
        )
    raise PermanentDeliveryError(reason, response=body)


def _entry_status(entry: Any) -> str:
    """The status code of a transaction-response entry ("201 Created" -> "201")."""
    status = (entry.get("response") or {}).get("status") if isinstance(entry, dict) else None
    return str(status).split(" ", 1)[0] if status else "?"


class FhirWriteback:
    """The deliverer of ``fhir-writeback`` outbox items."""

    def __init__(self, destinations: Destinations, session: requests.Session | None = None) -> None:
        self.destinations = destinations
        self.session = session if session is not None else requests.Session()

    def __call__(self, item: Claimed) -> str | None:
        """Send one outcome; returns the summary kept on the outbox item."""
        target = self._target(item)
        if target.mode == "message":
            summary = self._message(target, item)
        else:
            summary = self._transaction(target, item)
        log.info("fhir write-back for referral %s delivered: %s", item.referral_id, summary)
        return summary

    def _target(self, item: Claimed) -> Writeback:
        """The write-back configuration of the referral's source."""
        prefix, _, source = item.destination.partition(":")
        if prefix != "writeback" or not source:
            source = item.payload["referral"]["source"]
        target = self.destinations.writeback.get(source)
        if target is None or not target.fhir:
            raise PermanentDeliveryError(f"no FHIR write-back is configured for {source}")
        return target

    def _headers(self, target: Writeback, **extra: str) -> dict[str, str]:
        """Accept, the bearer token when configured, and any extra headers."""
        headers = {"Accept": FHIR_JSON, **extra}
        token = target.token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _request(
        self, method: str, url: str, target: Writeback, what: str, **kwargs: Any
    ) -> requests.Response:
        """One HTTP exchange; network failures become transient delivery errors."""
        try:
            return self.session.request(
                method, url, timeout=target.timeout, allow_redirects=False, **kwargs
            )
        except requests.Timeout:
            raise TransientDeliveryError(f"{what}: no answer in {target.timeout:g} s") from None
        except requests.ConnectionError:
            raise TransientDeliveryError(f"{what}: connection failed") from None
        except requests.RequestException as exc:
            raise TransientDeliveryError(f"{what}: {type(exc).__name__}") from None

    def _post(
        self, target: Writeback, url: str, bundle: dict[str, Any], what: str, **headers: str
    ) -> requests.Response:
        """POST a Bundle as FHIR JSON."""
        headers = self._headers(
            target, **{"Content-Type": FHIR_JSON, "Prefer": "return=minimal"}, **headers
        )
        return self._request("POST", url, target, what, data=orjson.dumps(bundle), headers=headers)

    def find_task(self, target: Writeback, referral_id: str) -> FoundTask | None:
        """The referral's Task on the server, or None when it has none yet."""
        base = str(target.fhir).rstrip("/")
        response = self._request(
            "GET",
            f"{base}/Task",
            target,
            "Task search",
            params={"identifier": f"{TASK_SYSTEM}|{referral_id}"},
            headers=self._headers(target, **{"Cache-Control": "no-cache"}),
        )
        if response.status_code != 200:
            _fail(response, "Task search")
        bundle = _json(response)
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise PermanentDeliveryError("Task search: the answer is not a Bundle")
        tasks = [
            entry["resource"]
            for entry in bundle.get("entry") or []
            if isinstance(entry, dict)
            and isinstance(entry.get("resource"), dict)
            and entry["resource"].get("resourceType") == "Task"
            and (entry.get("search") or {}).get("mode", "match") == "match"
        ]
        if not tasks:
            return None
        if len(tasks) > 1:
            raise PermanentDeliveryError(
                f"Task search: {len(tasks)} Tasks carry this referral's identifier; "
                "merge them on the server, then replay"
            )
        task = tasks[0]
        task_id = task.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise PermanentDeliveryError("Task search: the Task has no id")
        version = (task.get("meta") or {}).get("versionId")
        if not version:
            version = self._etag_version(target, base, task_id)
        outputs = [o for o in task.get("output") or [] if isinstance(o, dict)]
        return FoundTask(task_id, str(version) if version else None, outputs)

    def _etag_version(self, target: Writeback, base: str, task_id: str) -> str | None:
        """The Task's version from the ETag of a read (when the search left meta out)."""
        response = self._request(
            "GET",
            f"{base}/Task/{task_id}",
            target,
            "Task read",
            headers=self._headers(target, **{"Cache-Control": "no-cache"}),
        )
        if response.status_code != 200:
            _fail(response, "Task read")
        found = _ETAG.match(response.headers.get("ETag", "").strip())
        return found.group(1) if found else None

    def _transaction(self, target: Writeback, item: Claimed) -> str:
        """Read the Task, send the transaction; re-read and resend once on 409/412."""
        base = str(target.fhir).rstrip("/")
        for attempt in (1, 2):
            task = self.find_task(target, item.payload["referral"]["id"])
            try:
                if task is None:
                    bundle = build_transaction(item.payload)
                else:
                    bundle = build_transaction(
                        item.payload, task.version, task.id, earlier_outputs=task.outputs
                    )
                validate(bundle)
            except ValueError as exc:
                raise PermanentDeliveryError(
                    f"the write-back Bundle was not built: {exc}"
                ) from None
            response = self._post(target, base, bundle, "transaction")
            if response.status_code not in _CONFLICT:
                return self._settle_transaction(response, bundle)
            if attempt == 1:
                log.info(
                    "fhir write-back for referral %s: HTTP %d, reading the Task again",
                    item.referral_id,
                    response.status_code,
                )
        raise TransientDeliveryError(
            f"transaction: HTTP {response.status_code} twice (version conflict or a "
            f"conditional create matching several){_what_failed(response)}",
            response=_kept(response),
        )

    def _settle_transaction(self, response: requests.Response, sent: dict[str, Any]) -> str:
        """Delivered, or the error the answer (or one of its entries) calls for."""
        if not 200 <= response.status_code < 300:
            _fail(response, "transaction")
        body = _json(response)
        status = response.status_code
        if not isinstance(body, dict) or body.get("type") != "transaction-response":
            kind = body.get("resourceType") if isinstance(body, dict) else None
            return f"{status} {kind or 'answer without a FHIR body'}"
        kinds = [e["resource"]["resourceType"] for e in sent["entry"]]
        entries = body.get("entry") or []
        results = [
            (kinds[i] if i < len(kinds) else "entry", _entry_status(entry))
            for i, entry in enumerate(entries)
        ]
        summary = f"{status} transaction-response: " + ", ".join(f"{k} {c}" for k, c in results)
        refused = [f"{k} {c}" for k, c in results if c.startswith("4")]
        if refused:
            raise PermanentDeliveryError(
                f"transaction-response refused {', '.join(refused)}", response=_kept(response)
            )
        failed = [f"{k} {c}" for k, c in results if c.startswith("5")]
        if failed:
            raise TransientDeliveryError(
                f"transaction-response failed {', '.join(failed)}", response=_kept(response)
            )
        return summary

    def _message(self, target: Writeback, item: Claimed) -> str:
        """Send the BaRS message to $process-message."""
        base = str(target.fhir).rstrip("/")
        try:
            bundle = build_message(item.payload, base)
            validate(bundle)
        except ValueError as exc:
            raise PermanentDeliveryError(f"the write-back message was not built: {exc}") from None
        correlation = uuid.uuid5(_CORRELATION, item.payload["referral"]["id"])
        response = self._post(
            target,
            f"{base}/$process-message",
            bundle,
            "message",
            **{"X-Request-Id": str(uuid.uuid4()), "X-Correlation-Id": str(correlation)},
        )
        if not 200 <= response.status_code < 300:
            _fail(response, "message")
        body = _json(response)
        code = None
        if isinstance(body, dict) and body.get("type") == "message":
            first = (body.get("entry") or [{}])[0]
            header = first.get("resource") if isinstance(first, dict) else None
            if isinstance(header, dict) and header.get("resourceType") == "MessageHeader":
                code = (header.get("response") or {}).get("code")
        if code == "fatal-error":
            raise PermanentDeliveryError(
                "message: the response is fatal-error", response=_kept(response)
            )
        if code == "transient-error":
            raise TransientDeliveryError(
                "message: the response is transient-error", response=_kept(response)
            )
        return f"{response.status_code} message response: {code or 'no response code'}"
