"""`memory`: keeps events in the process, for tests and dry runs."""

from __future__ import annotations

from collections.abc import Sequence

from consumer.config import MemorySinkConfig
from consumer.decode import StreamContext
from consumer.events import ChangeEvent
from consumer.sinks.base import Failure
from consumer.sinks.registry import register


@register("memory")
class MemorySink:
    def __init__(self, config: MemorySinkConfig, context: StreamContext) -> None:
        del context
        self.name = config.name
        self.events: list[ChangeEvent] = []

    def send(self, batch: Sequence[ChangeEvent]) -> Sequence[Failure]:
        self.events.extend(batch)
        return ()

    def close(self) -> None:
        return None
