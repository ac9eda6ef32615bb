"""`eventbridge`: PutEvents to an event bus; the message body, a JSON object, is the event's detail."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from consumer import clients
from consumer.config import EventBridgeSinkConfig
from consumer.errors import DeliveryError, PermanentDeliveryError, ThrottledError, TransientDeliveryError
from consumer.events import StreamContext
from consumer.sinks import aws
from consumer.sinks.base import Failure, Message
from consumer.sinks.registry import register

if TYPE_CHECKING:
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef, PutEventsResponseTypeDef

# The entry codes retrying can fix; any other ErrorCode (InvalidArgument, MalformedDetail, AccessDenied...) is
# permanent.
_TRANSIENT_ENTRY_CODES = clients.TRANSIENT_CODES
_TIME_BYTES = 14  # what a Time field counts for in the entry size, whatever its value


@register("eventbridge")
class EventBridgeSink:
    def __init__(self, config: EventBridgeSinkConfig, context: StreamContext) -> None:
        self.name = config.name
        self._bus = config.event_bus_name
        self._source = config.source
        self._detail_type = config.detail_type
        self._resources = [context.stream_arn]
        self._client: EventBridgeClient = aws.client("events", config, context)

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        if not batch:
            return ()
        return aws.send_in_chunks(batch, self._measure, self._call, f"EventBridge PutEvents to bus {self._bus}")

    def close(self) -> None:
        self._client.close()

    def _measure(self, message: Message) -> int:
        try:
            detail = json.loads(message.body)
        except ValueError:
            detail = None
        if not isinstance(detail, dict):
            raise PermanentDeliveryError("EventBridge detail must be a JSON object")
        # The entry size as EventBridge computes it ("Calculating PutEvents event entry size").
        size = (
            _TIME_BYTES
            + aws.utf8_size(self._source, "source")
            + aws.utf8_size(self._detail_type_of(message), "detail type")
            + aws.utf8_size(message.body, "detail")
            + sum(aws.utf8_size(resource, "resource") for resource in self._resources)
        )
        return aws.check_size(size)

    def _call(self, messages: Sequence[Message]) -> Sequence[tuple[int, DeliveryError]]:
        entries = [self._entry(message) for message in messages]
        response = self._client.put_events(Entries=entries)
        return failures_from_response(len(entries), response)

    def _entry(self, message: Message) -> PutEventsRequestEntryTypeDef:
        return {
            "Source": self._source,
            "DetailType": self._detail_type_of(message),
            "Detail": message.body,
            "EventBusName": self._bus,
            "Resources": self._resources,
            "Time": message.event.approximate_creation,
        }

    def _detail_type_of(self, message: Message) -> str:
        return self._detail_type or message.event.event_name.value


def failures_from_response(count: int, response: PutEventsResponseTypeDef) -> list[tuple[int, DeliveryError]]:
    """The entries of one PutEvents call that failed; the result entries are in the order of the request's."""
    results = response.get("Entries", [])
    failures: list[tuple[int, DeliveryError]] = []
    for position in range(count):
        if position >= len(results):
            failures.append((position, TransientDeliveryError("the response has no result for this entry")))
            continue
        result = results[position]
        code = result.get("ErrorCode")
        if code:
            text = f"{code}: {result.get('ErrorMessage', '')}".rstrip(": ")
            error: DeliveryError
            if "Throttl" in code:
                error = ThrottledError(text)
            elif code in _TRANSIENT_ENTRY_CODES:
                error = TransientDeliveryError(text)
            else:
                error = PermanentDeliveryError(text)
            failures.append((position, error))
        elif not result.get("EventId"):
            failures.append((position, TransientDeliveryError("the response has no result for this entry")))
    return failures
