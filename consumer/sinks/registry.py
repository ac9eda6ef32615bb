"""Sink plug-ins, found by the `type` of their configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from consumer.decode import StreamContext
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
    _load_builtin_sinks()
    return _FACTORIES[config.type](config, context)


def registered_types() -> list[str]:
    _load_builtin_sinks()
    return sorted(_FACTORIES)


def _load_builtin_sinks() -> None:
    # Importing a sink module registers it; kept lazy so a sink's dependencies load only where it is used.
    from consumer.sinks import eventbridge, file, handler, log, memory, sns, sqs, webhook  # noqa: F401, PLC0415
