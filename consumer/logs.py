"""Logging setup: structlog, JSON on stderr (stdout of a record-processor child is the KCL protocol channel)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from consumer.payloads import dumps


def _serialize(event: Any, **_: Any) -> str:
    return dumps(event)


def configure_logging(level: str = "INFO", *, json_output: bool | None = None) -> None:
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
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        # sys.stderr is looked up per logger, not captured here, so a replaced stderr (tests) is honoured.
        logger_factory=lambda *_: structlog.PrintLogger(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
