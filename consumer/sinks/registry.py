"""Sink plug-ins, found by the `type` of their configuration."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from consumer.events import StreamContext
from consumer.sinks.base import Sink

SinkFactory = Callable[[Any, StreamContext], Sink]
_FACTORIES: dict[str, SinkFactory] = {}

F = TypeVar("F", bound=SinkFactory)


def register(sink_type: str) -> Callable[[F], F]:
    def decorate(factory: F) -> F:
        if sink_type in _FACTORIES:
            raise ValueError(f"sink type {sink_type!r} is registered twice")
        _FACTORIES[sink_type] = factory
        return factory

    return decorate


def build_sink(config: Any, context: StreamContext) -> Sink:
    """Instantiate the sink for a validated sink config (its `type` picks the plug-in)."""
    _load_builtin_sink(config.type)
    return _FACTORIES[config.type](config, context)


def registered_types() -> list[str]:
    for sink_type in _BUILTIN:
        _load_builtin_sink(sink_type)
    return sorted(_FACTORIES)


# Importing a sink module registers it. Only the modules of the configured types are imported: a child that sends
# to a webhook never loads boto3 (about 10 MiB per process, and one process runs per shard).
_BUILTIN = {
    "eventbridge": "eventbridge",
    "file": "file",
    "handler": "handler",
    "log": "log",
    "memory": "memory",
    "sns": "sns",
    "sqs": "sqs",
    "webhook": "webhook",
}


def _load_builtin_sink(sink_type: str) -> None:
    module = _BUILTIN.get(sink_type)
    if module is not None and sink_type not in _FACTORIES:
        importlib.import_module(f"consumer.sinks.{module}")
