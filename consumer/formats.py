"""Payload formats a route can send: `lambda`, `plain` and `template`."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from consumer.decode import to_lambda_record
from consumer.events import ChangeEvent, StreamContext
from consumer.payloads import dumps, plain, plain_json

JSON = "application/json"
TEXT = "text/plain"

Renderer = Callable[[ChangeEvent], str]


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


def renderer(format_name: str, context: StreamContext, template: str | None = None) -> Renderer:
    match format_name:
        case "lambda":
            return lambda event: dumps(to_lambda_record(event, context, private=False))
        case "plain":
            return lambda event: dumps(plain_json(event))
        case "template":
            if template is None:
                raise ValueError("the template format needs a template")
            compiled = compile_template(template)
            return lambda event: compiled.render(template_variables(event, context))
    raise ValueError(f"unknown format {format_name!r}")
