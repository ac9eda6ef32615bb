"""`sns`: PublishBatch to a topic; a FIFO topic gets the item key as group id and the eventID as dedup id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from consumer.config import SnsSinkConfig
from consumer.errors import DeliveryError, PermanentDeliveryError
from consumer.events import StreamContext
from consumer.sinks import aws
from consumer.sinks.base import Failure, Message
from consumer.sinks.registry import register

if TYPE_CHECKING:
    from mypy_boto3_sns.client import SNSClient
    from mypy_boto3_sns.type_defs import (
        PublishBatchRequestEntryTypeDef,
        PublishBatchResponseTypeDef,
    )


@register("sns")
class SnsSink:
    def __init__(self, config: SnsSinkConfig, context: StreamContext) -> None:
        self.name = config.name
        self._topic_arn = config.topic_arn
        self._fifo = aws.is_fifo(config.topic_arn)
        self._client: SNSClient = aws.client("sns", config, context)

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        if not batch:
            return ()
        return aws.send_in_chunks(
            batch,
            self._measure,
            self._call,
            f"SNS PublishBatch to {self._topic_arn}",
            group=aws.group_id if self._fifo else None,
        )

    def close(self) -> None:
        self._client.close()

    def _measure(self, message: Message) -> int:
        if not message.body:
            raise PermanentDeliveryError("SNS refuses an empty message")
        # The message attributes count towards the 256 KiB, as for SQS (and they are copied there).
        return aws.check_size(aws.utf8_size(message.body) + aws.attributes_size(aws.attribute_values(message)))

    def _call(self, messages: Sequence[Message]) -> Sequence[tuple[int, DeliveryError]]:
        entries = [self._entry(position, message) for position, message in enumerate(messages)]
        response = self._client.publish_batch(TopicArn=self._topic_arn, PublishBatchRequestEntries=entries)
        return failures_from_response(len(entries), response)

    def _entry(self, position: int, message: Message) -> PublishBatchRequestEntryTypeDef:
        return cast("PublishBatchRequestEntryTypeDef", aws.batch_entry(position, message, "Message", fifo=self._fifo))


def failures_from_response(count: int, response: PublishBatchResponseTypeDef) -> list[tuple[int, DeliveryError]]:
    """The entries of one PublishBatch call that failed: SenderFault -> permanent, else transient."""
    return aws.batch_failures(
        count,
        (entry["Id"] for entry in response.get("Successful", []) if "Id" in entry),
        (
            aws.EntryFailure(entry["Id"], entry["Code"], entry.get("Message", ""), entry["SenderFault"])
            for entry in response.get("Failed", [])
        ),
    )
