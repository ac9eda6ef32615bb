"""Payload formats: what a route can send, each a name, a renderer, the content type its output has unless the
route says otherwise, and whether that output is JSON by construction.

Adding a format means adding it to `FormatName` and `FORMATS` here (and a test in tests/unit/test_formats.py): the
configuration, the router and the sinks take their formats from this module.

    lambda     the record as a Lambda event source mapping delivers it (typed DynamoDB JSON)
    plain      the record's images as plain JSON values, with what changed between them
    template   a route's own Jinja2 template over both (text unless the route says its output is JSON)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from consumer.events import ChangeEvent, StreamContext
from consumer.jsontext import dumps, timestamp

JSON = "application/json"
TEXT = "text/plain"

Renderer = Callable[[ChangeEvent], str]
FormatName = Literal["plain", "lambda", "template"]


@dataclass(frozen=True, slots=True)
class PayloadFormat:
    name: str
    build: Callable[[StreamContext, str | None], Renderer]  # (context, the route's template) -> renderer
    content_type: str
    # Only a hand-written template can produce broken JSON; the other formats are JSON whatever the record holds.
    json_by_construction: bool
    takes_template: bool = False


def renderer(format_name: str, context: StreamContext, template: str | None = None) -> Renderer:
    payload_format = FORMATS.get(format_name)
    if payload_format is None:
        raise ValueError(f"unknown format {format_name!r}")
    return payload_format.build(context, template)


def content_type(format_name: str, configured: str | None) -> str:
    """The route's content type: its own, else its format's."""
    return configured or FORMATS[format_name].content_type


def must_check_json(format_name: str, content_type: str) -> bool:
    """Whether each rendered body must be parsed before it is sent: it claims to be JSON, and nothing makes it so."""
    return content_type == JSON and not FORMATS[format_name].json_by_construction


if TYPE_CHECKING:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment


@cache
def _environment() -> ImmutableSandboxedEnvironment:
    # Imported on first use: only configurations with templates pay for Jinja2 (a few MiB in every child).
    import jinja2  # noqa: PLC0415
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: PLC0415

    # Sandboxed and immutable: a template from a config file may read the event, never call into the process.
    # StrictUndefined turns a misspelt variable into an error instead of an empty string in a notification.
    environment = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    environment.policies["json.dumps_function"] = lambda value, **_: dumps(value)
    return environment


def compile_template(source: str) -> jinja2.Template:
    """Raises ValueError with the line and the reason when the template does not parse."""
    import jinja2  # noqa: PLC0415

    try:
        return _environment().from_string(source)
    except jinja2.TemplateSyntaxError as error:
        raise ValueError(f"template syntax error on line {error.lineno}: {error.message}") from None


def template_variables(event: ChangeEvent, context: StreamContext) -> dict[str, Any]:
    """What a template sees: the plain fields (new, old, keys, changed, eventName, ...) plus `record`, the
    record as Lambda delivers it."""
    return {**plain(event), "record": to_lambda_record(event, context, private=False)}


def to_lambda_record(event: ChangeEvent, context: StreamContext, *, private: bool = True) -> dict[str, Any]:
    """The record as a Lambda event source mapping delivers it, so Lambda handlers run unchanged.

    `private`: a deep copy, for code that may edit it in place (a handler), so that a retry or another sink never
    sees the edit. Readers (filters, renderers, the dead-letter entry) pass False and share the images.
    """
    raw = event.record
    dynamodb = copy.deepcopy(dict(raw["dynamodb"])) if private else dict(raw["dynamodb"])
    for image in ("NewImage", "OldImage"):
        # The adapter writes an absent image as {}; Lambda leaves the key out.
        if not dynamodb.get(image):
            dynamodb.pop(image, None)
    # AWS sends whole seconds as a JSON number with a fraction (1664559083.0): handlers that check for a float, and
    # JSON Schema "number" vs "integer", see the same type as under Lambda.
    dynamodb["ApproximateCreationDateTime"] = float(int(event.approximate_creation.timestamp()))
    out: dict[str, Any] = {
        "eventID": raw["eventID"],
        "eventName": raw["eventName"],
        "eventVersion": raw.get("eventVersion", "1.1"),
        "eventSource": raw.get("eventSource", "aws:dynamodb"),
        "awsRegion": raw.get("awsRegion") or context.region,
        "dynamodb": dynamodb,
        "eventSourceARN": context.stream_arn,
    }
    if "userIdentity" in raw:
        out["userIdentity"] = copy.deepcopy(raw["userIdentity"]) if private else raw["userIdentity"]
    return out


def plain(event: ChangeEvent) -> dict[str, Any]:
    """Unmarshalled view of an event: what most notification consumers want."""
    return _plain_view(event, event.new_image, event.old_image, event.approximate_creation)


def plain_json(event: ChangeEvent) -> dict[str, Any]:
    """`plain`, built from the images' JSON-ready forms: the same JSON once written, without decoding a value."""
    new = None if event.new is None else event.new.json
    old = None if event.old is None else event.old.json
    return _plain_view(event, new, old, timestamp(event.approximate_creation))


def _plain_view(event: ChangeEvent, new: Any, old: Any, created: datetime | str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "eventID": event.event_id,
        "eventName": event.event_name.value,
        "table": event.table,
        "keys": event.keys,
        "new": new,
        "old": old,
        "changed": list(event.changed),
        "sequenceNumber": event.sequence_number,
        "approximateCreationDateTime": created,
    }
    if event.user_identity is not None:
        payload["userIdentity"] = {
            "principalId": event.user_identity.principal_id,
            "type": event.user_identity.type,
        }
    return payload


def _lambda(context: StreamContext, template: str | None) -> Renderer:
    del template
    return lambda event: dumps(to_lambda_record(event, context, private=False))


def _plain(context: StreamContext, template: str | None) -> Renderer:
    del context, template
    return lambda event: dumps(plain_json(event))


def _template(context: StreamContext, template: str | None) -> Renderer:
    if template is None:
        raise ValueError("the template format needs a template")
    compiled = compile_template(template)
    return lambda event: compiled.render(template_variables(event, context))


FORMATS: dict[str, PayloadFormat] = {
    "lambda": PayloadFormat("lambda", _lambda, JSON, json_by_construction=True),
    "plain": PayloadFormat("plain", _plain, JSON, json_by_construction=True),
    "template": PayloadFormat("template", _template, TEXT, json_by_construction=False, takes_template=True),
}
