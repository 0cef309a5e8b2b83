"""JSON referral intake: community partners and the self-referral form, through the pipeline.

The thin adapter between the JSON channels (``POST /community/referrals`` and the ``/refer``
form) and ``gateway.intake.pipeline``: it decodes one JSON object, hands it to the source's
``format: json`` mapping and raises the pipeline's refusal, as a domain error naming the
element (``person.nhs_number``), for the HTTP edge to answer.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from gateway.errors import GatewayError, InvalidMessage, NotSupported, UnsupportedMediaType
from gateway.fhir.body import json_kind
from gateway.intake.pipeline import InboundMessage, Pipeline, Steps
from gateway.mapping.engine import Mapping
from gateway.store.referrals import Stored

JSON_MEDIA_TYPE = "application/json"
#: The location of a refusal about the body as a whole (not JSON, not one object).
BODY = "body"
#: The one kind of document a JSON mapping accepts (``accepts: [object]``).
OBJECT = "object"


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key-value pairs in order, repeats kept."""


class _Repeated(Exception):
    """Some JSON object in the body gives a key twice."""


def _no_repeats(pairs: list[tuple[str, Any]]) -> None:
    """Raise ``_Repeated`` when one object's pairs give a key twice (the objects are not
    built: this pass only looks)."""
    if len(pairs) > 1 and len({key for key, _ in pairs}) != len(pairs):
        raise _Repeated


def repeated_key(body: bytes) -> str | None:
    """The JSONPath of the first key given twice in one object (orjson keeps the last one
    silently: which would count?), or None."""
    try:
        json.loads(body, object_pairs_hook=_no_repeats)
        return None
    except _Repeated:
        pass
    stack: list[tuple[Any, str]] = [(json.loads(body, object_pairs_hook=_Pairs), "$")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Pairs):
            seen: set[str] = set()
            for key, _ in node:
                if key in seen:
                    return f"{path}.{key}"
                seen.add(key)
            stack.extend((value, f"{path}.{key}") for key, value in reversed(node))
        elif isinstance(node, list):
            stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(node))))
    return None


def _check_media_type(content_type: str | None) -> None:
    """Refuse anything but ``application/json`` in UTF-8 (no Content-Type: JSON is assumed)."""
    if content_type is None or not content_type.strip():
        return
    head, *params = content_type.split(";")
    if head.strip().lower() != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(
            f"Content-Type {head.strip()!r} is not supported here; send {JSON_MEDIA_TYPE}"
        )
    for param in params:
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"charset {charset!r} is not supported; send UTF-8")


def decode_document(body: bytes, content_type: str | None) -> dict[str, Any]:
    """One JSON object from a body, or the refusal of a body that is not one."""
    _check_media_type(content_type)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"the body is not valid JSON: {exc}", expression=BODY) from None
    if not isinstance(value, dict):
        raise NotSupported(
            f"the body must be one JSON object (a referral), not a JSON {json_kind(value)}",
            expression=BODY,
        )
    try:
        where = repeated_key(body)
    except RecursionError:
        raise InvalidMessage("the JSON body is nested too deeply", expression=BODY) from None
    if where is not None:
        raise InvalidMessage(f"{where} is given more than once in one object", expression=where)
    return value


def translate_document(
    mappings: dict[str, Mapping], source: str, body: bytes, content_type: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decode and map one JSON document for ``source``: (document, record). Stores nothing."""
    document = decode_document(body, content_type)
    mapping = mappings[source]
    if OBJECT not in mapping.accepts:  # pragma: no cover - a JSON mapping accepts objects
        raise NotSupported(f"source {source} does not take JSON documents")
    return document, mapping.translate(document)


class _DocumentSteps(Steps):
    """One JSON document's translation; the sender's message id is noted on the message."""

    def __init__(self, mappings: dict[str, Mapping], message: InboundMessage) -> None:
        self.mappings = mappings
        self.message = message

    def translate(self) -> dict[str, Any]:
        """Decode and map the document."""
        message = self.message
        _, record = translate_document(
            self.mappings, message.source, message.body, message.content_type
        )
        message.source_message_id = (record.get("provenance") or {}).get("source_message_id")
        return record


class DocumentIntake:
    """Receives JSON referrals for the ``format: json`` sources, through the one pipeline
    (the FHIR intake's: the same store, mappings and new-version hook)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def receive(
        self,
        source: str,
        body: bytes,
        content_type: str | None,
        *,
        channel: str,
        request_id: str | None = None,
        over_limit: GatewayError | None = None,
    ) -> Stored:
        """Take one document end to end (what was stored, or is already held), or raise its
        refusal once the message is kept."""
        message = InboundMessage(
            channel=channel,
            source=source,
            body=body,
            content_type=content_type,
            request_id=request_id,
            truncated=over_limit is not None,
            success_status=201,
        )
        if over_limit is not None:
            self.pipeline.refuse(message, over_limit)
            raise over_limit
        outcome = self.pipeline.take(message, _DocumentSteps(self.pipeline.mappings, message))
        if outcome.error is not None:
            raise outcome.error
        if outcome.stored is None:  # pragma: no cover - take stores or refuses
            raise RuntimeError("the pipeline neither stored nor refused the document")
        return outcome.stored


def reference_of(referral_id: str) -> str:
    """The reference a person or partner quotes: ``SP-`` and the first eight hex digits of
    the record id (a random UUID, so one reference says nothing about another's)."""
    digits = referral_id.replace("-", "").upper()
    return f"SP-{digits[:4]}-{digits[4:8]}"
