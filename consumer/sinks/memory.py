"""`memory`: keeps messages in the process, for tests and dry runs."""

from __future__ import annotations

from collections.abc import Sequence

from consumer.config import MemorySinkConfig
from consumer.events import StreamContext
from consumer.sinks.base import Failure, Message
from consumer.sinks.registry import register


@register("memory")
class MemorySink:
    def __init__(self, config: MemorySinkConfig, context: StreamContext) -> None:
        del context
        self.name = config.name
        self.messages: list[Message] = []
        self.received = 0
        self._keep = config.keep

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        self.received += len(batch)
        if self._keep is None:
            self.messages.extend(batch)
        elif self._keep:
            self.messages = [*self.messages, *batch][-self._keep :]
        return ()

    def close(self) -> None:
        return None
