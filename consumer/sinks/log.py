"""`log`: one structured line per event through structlog (stderr)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import structlog

from consumer.config import LogSinkConfig
from consumer.events import ChangeEvent, StreamContext
from consumer.formats import JSON
from consumer.sinks.base import Failure, Message
from consumer.sinks.registry import register


@register("log")
class LogSink:
    def __init__(self, config: LogSinkConfig, context: StreamContext) -> None:
        self.name = config.name
        self._fields = config.fields
        self._log = structlog.get_logger("consumer.sinks.log").bind(sink=config.name, table=context.table)

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        for message in batch:
            self._log.info("change", route=message.route, **self._line(message.event))
        return ()

    def _line(self, event: ChangeEvent) -> dict[str, Any]:
        image = event.image
        line: dict[str, Any] = {
            "event_name": event.event_name.value,
            "keys": event.keys,
            "event_id": event.event_id,
            "sequence_number": event.sequence_number,
        }
        if event.changed:
            line["changed"] = list(event.changed)
        if event.is_ttl_delete:
            line["ttl_delete"] = True
        # Under their own key: an attribute called "event" or "level" must not collide with the line's fields.
        selected = {field: image[field] for field in self._fields if field in image}
        if selected:
            line["item"] = selected
        return line

    def close(self) -> None:
        return None


def _structured(message: Message) -> Any:
    # A JSON body is logged as JSON, not as a string holding JSON: readable, and its attributes can be redacted.
    if message.content_type == JSON:
        try:
            return json.loads(message.body)
        except ValueError:
            pass
    return message.body


class DryRunSink:
    """Stands in for a configured sink under `dry_run`: logs what it would have been sent."""

    def __init__(self, name: str, sink_type: str) -> None:
        self.name = name
        self._log = structlog.get_logger("consumer.sinks.dry_run").bind(sink=name, sink_type=sink_type)

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        for message in batch:
            self._log.info(
                "would send",
                route=message.route,
                event_id=message.event.event_id,
                content_type=message.content_type,
                body=_structured(message),
            )
        return ()

    def close(self) -> None:
        return None
