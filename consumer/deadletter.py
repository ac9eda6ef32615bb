"""The on-failure destination: every record a sink could not take, kept whole.

Lambda's on-failure destinations receive only metadata (shard and sequence numbers), which is useless once the
stream has trimmed the record after 24 hours. An entry here carries the full record as Lambda delivers it, so it
can be redriven (`consumer redrive`) or read by a person:

    {"version": 1, "application": ..., "route": ..., "sink": ..., "error": {"class": ..., "message": ...},
     "attempts": 3, "firstAttemptTime": ISO-8601, "lastAttemptTime": ISO-8601, "sequenceNumber": ...,
     "record": {...the record exactly as Lambda delivers it...}}

A record that could not even be decoded has "record": null and "rawData" (base64 of the exact bytes) instead.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from consumer import files
from consumer.config import FileDestinationConfig, OnFailureConfig, SnsDestinationConfig, SqsDestinationConfig
from consumer.decode import StreamContext, to_lambda_record
from consumer.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from consumer.events import ChangeEvent
from consumer.payloads import dumps

ENTRY_VERSION = 1
_MAX_QUEUE_MESSAGE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record that will not be delivered to one sink."""

    route: str | None
    sink: str | None
    error: DeliveryError | Exception
    attempts: int
    first_attempt: datetime
    last_attempt: datetime
    sequence_number: str
    event: ChangeEvent | None = None
    raw_data: bytes | None = None  # only for a record that could not be decoded


class Destination(Protocol):
    name: str

    def put(self, bodies: Sequence[str]) -> None:
        """Store every body or raise a DeliveryError; nothing is checkpointed past an entry not stored."""

    def close(self) -> None: ...


def entry(letter: DeadLetter, application: str, context: StreamContext) -> str:
    document: dict[str, Any] = {
        "version": ENTRY_VERSION,
        "application": application,
        "route": letter.route,
        "sink": letter.sink,
        "error": {"class": type(letter.error).__name__, "message": str(letter.error)},
        "attempts": letter.attempts,
        "firstAttemptTime": letter.first_attempt,
        "lastAttemptTime": letter.last_attempt,
        "sequenceNumber": letter.sequence_number,
        "record": to_lambda_record(letter.event, context, private=False) if letter.event is not None else None,
    }
    if letter.raw_data is not None:
        document["rawData"] = base64.b64encode(letter.raw_data).decode("ascii")
    return dumps(document)


def build_destination(config: OnFailureConfig, context: StreamContext) -> Destination:
    if isinstance(config, FileDestinationConfig):
        return FileDestination(config)
    return QueueDestination(config, context)


class FileDestination:
    """JSON lines appended and fsynced under the file's lock, like the file sink: simple, and no size limit."""

    def __init__(self, config: FileDestinationConfig) -> None:
        self.name = f"file:{config.path}"
        self._path = config.path

    def put(self, bodies: Sequence[str]) -> None:
        data = "".join(body + "\n" for body in bodies).encode("utf-8")
        try:
            with files.locked(self._path, files.DEAD_LETTER_MODE) as fd:
                try:
                    files.append(fd, data)
                except OSError as error:
                    raise TransientDeliveryError(f"cannot write the dead-letter file: {error.strerror}") from error
        except OSError as error:
            raise PermanentDeliveryError(f"cannot open the dead-letter file {self._path}: {error.strerror}") from error

    def close(self) -> None:
        return None


class QueueDestination:
    """An SQS queue or an SNS topic, one entry per message (dead letters are few; order is kept)."""

    def __init__(self, config: SqsDestinationConfig | SnsDestinationConfig, context: StreamContext) -> None:
        service = "sqs" if isinstance(config, SqsDestinationConfig) else "sns"
        self._target = config.queue_url if isinstance(config, SqsDestinationConfig) else config.topic_arn
        self.name = f"{service}:{self._target}"
        self._service = service
        self._fifo = self._target.endswith(".fifo")
        # Imported here: boto3 costs a child about 10 MiB, worth paying only where an AWS destination is used.
        import boto3  # noqa: PLC0415
        from botocore.config import Config as BotoConfig  # noqa: PLC0415

        self._client: Any = boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            region_name=config.region or context.region,
            endpoint_url=config.endpoint_url or context.endpoint_url,
            config=BotoConfig(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30),
        )

    def put(self, bodies: Sequence[str]) -> None:
        for body in bodies:
            size = len(body.encode("utf-8"))
            if size > _MAX_QUEUE_MESSAGE_BYTES:
                raise PermanentDeliveryError(
                    f"dead-letter entry of {size} bytes exceeds the {self._service.upper()} limit of "
                    f"{_MAX_QUEUE_MESSAGE_BYTES}; use a file destination for records this large"
                )
            fifo: dict[str, str] = {}
            if self._fifo:
                fifo = {
                    "MessageGroupId": "dead-letters",
                    "MessageDeduplicationId": hashlib.sha256(body.encode("utf-8")).hexdigest(),
                }
            from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - loaded in __init__

            try:
                if self._service == "sqs":
                    self._client.send_message(QueueUrl=self._target, MessageBody=body, **fifo)
                else:
                    self._client.publish(TopicArn=self._target, Message=body, **fifo)
            except (ClientError, BotoCoreError) as error:
                raise TransientDeliveryError(f"cannot store a dead letter in {self.name}: {error}") from error

    def close(self) -> None:
        self._client.close()


def now() -> datetime:
    return datetime.now(tz=UTC)
