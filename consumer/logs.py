"""Logging setup: structlog, JSON on stderr (stdout of a record-processor child is the KCL protocol channel)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from consumer.jsontext import dumps


def _serialize(event: Any, **_: Any) -> str:
    return dumps(event)


REDACTED = "[redacted]"


class Redactor:
    """Replaces the value of every key named in `log_redact`, at any depth and in any case, before rendering.

    Images are logged as mappings (DynamoDB JSON or plain), so an attribute is a key wherever it appears.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(name.lower() for name in names)

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        del logger, method
        if not self.names:
            return event
        for key, value in list(event.items()):
            event[key] = REDACTED if key.lower() in self.names else self._scrub(value)
        return event

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: REDACTED if str(k).lower() in self.names else self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(item) for item in value]
        return value


def configure_logging(level: str = "INFO", *, json_output: bool | None = None, redact: Iterable[str] = ()) -> None:
    """JSON lines on stderr; a readable console renderer when stderr is a terminal (unless json_output)."""
    if json_output is None:
        json_output = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_serialize)
        if json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            Redactor(redact),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        # sys.stderr is looked up per logger, not captured here, so a replaced stderr (tests) is honoured.
        logger_factory=lambda *_: structlog.PrintLogger(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
