"""`sqs`: SendMessageBatch to a queue; a FIFO queue gets the item key as group id and the eventID as dedup id."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from consumer.config import SqsSinkConfig
from consumer.errors import DeliveryError, PermanentDeliveryError
from consumer.events import StreamContext
from consumer.sinks import aws
from consumer.sinks.base import Failure, Message
from consumer.sinks.registry import register

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import (
        SendMessageBatchRequestEntryTypeDef,
        SendMessageBatchResultTypeDef,
    )

# SQS refuses a body with characters outside #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF,
# and refuses the whole batch call for it: checked per message so only that message fails.
_INVALID_CHARACTER = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@register("sqs")
class SqsSink:
    def __init__(self, config: SqsSinkConfig, context: StreamContext) -> None:
        self.name = config.name
        self._queue_url = config.queue_url
        self._fifo = aws.is_fifo(config.queue_url)
        self._client: SQSClient = aws.client("sqs", config, context)

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        if not batch:
            return ()
        return aws.send_in_chunks(
            batch,
            self._measure,
            self._call,
            f"SQS SendMessageBatch to {self._queue_url}",
            group=aws.group_id if self._fifo else None,
        )

    def close(self) -> None:
        self._client.close()

    def _measure(self, message: Message) -> int:
        if not message.body:
            raise PermanentDeliveryError("SQS refuses an empty message body")
        size = aws.utf8_size(message.body) + aws.attributes_size(aws.attribute_values(message))
        aws.check_size(size)
        invalid = _INVALID_CHARACTER.search(message.body)
        if invalid:
            raise PermanentDeliveryError(f"SQS refuses the character U+{ord(invalid.group()):04X} in a message body")
        return size

    def _call(self, messages: Sequence[Message]) -> Sequence[tuple[int, DeliveryError]]:
        entries = [self._entry(position, message) for position, message in enumerate(messages)]
        response = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        return failures_from_response(len(entries), response)

    def _entry(self, position: int, message: Message) -> SendMessageBatchRequestEntryTypeDef:
        return cast(
            "SendMessageBatchRequestEntryTypeDef", aws.batch_entry(position, message, "MessageBody", fifo=self._fifo)
        )


def failures_from_response(count: int, response: SendMessageBatchResultTypeDef) -> list[tuple[int, DeliveryError]]:
    """The entries of one SendMessageBatch call that failed: SenderFault -> permanent, else transient."""
    return aws.batch_failures(
        count,
        (entry["Id"] for entry in response.get("Successful", [])),
        (
            aws.EntryFailure(entry["Id"], entry["Code"], entry.get("Message", ""), entry["SenderFault"])
            for entry in response.get("Failed", [])
        ),
    )
