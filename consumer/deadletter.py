"""The on-failure destination: every record a sink could not take, kept whole.

Lambda's on-failure destinations receive only metadata (shard and sequence numbers), which is useless once the
stream has trimmed the record after 24 hours. An entry here carries the full record as Lambda delivers it, so it
can be redriven (`consumer redrive`) or read by a person:

    {"version": 1, "application": ..., "route": ..., "sink": ..., "error": {"class": ..., "message": ...},
     "attempts": 3, "firstAttemptTime": ISO-8601, "lastAttemptTime": ISO-8601, "sequenceNumber": ...,
     "record": {...the record exactly as Lambda delivers it...}}

A record that could not even be decoded has "record": null and "rawData" (base64 of the exact bytes) instead.

An entry over the 256 KiB a queue or topic takes is stored whole in the destination's `overflow` (a file or an S3
bucket), and the queue or topic gets the same entry with "record": null and "overflow": {"s3": "s3://bucket/key"}
or {"file": path, "sha256": hex of the entry's line}. Without an overflow, it gets the entry with the record's
images left out and "truncated": true: the shard never stops on a large item, and the whole record can then be
read again only from the stream, within its 24 hours.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import structlog

from consumer import clients, files
from consumer.config import (
    Config,
    FileDestinationConfig,
    OnFailureConfig,
    S3DestinationConfig,
    SnsDestinationConfig,
    SqsDestinationConfig,
)
from consumer.errors import DeliveryError, StartupError
from consumer.events import ChangeEvent, StreamContext
from consumer.formats import to_lambda_record
from consumer.jsontext import dumps

log = structlog.get_logger("consumer.deadletter")

ENTRY_VERSION = 1
MAX_QUEUE_MESSAGE_BYTES = 256 * 1024  # SNS's limit, and SQS's before 2025: the one that holds for both
_ERROR_MESSAGE_CHARS = 4096
_S3_NO_BUCKET = frozenset({"NoSuchBucket", "404"})
_SQS_NO_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_SNS_NO_TOPIC = frozenset({"NotFound", "NotFoundException"})
_NOT_ALLOWED = frozenset({"AccessDenied", "AccessDeniedException", "AuthorizationError", "403"})
_SERVICE: dict[type, str] = {SqsDestinationConfig: "sqs", SnsDestinationConfig: "sns", S3DestinationConfig: "s3"}


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
    if isinstance(config, S3DestinationConfig):
        return S3Destination(config, context)
    return QueueDestination(config, context)


class FileDestination:
    """JSON lines appended and fsynced under the file's lock, like the file sink: simple, and no size limit."""

    def __init__(self, config: FileDestinationConfig) -> None:
        self.name = f"file:{config.path}"
        self._path = config.path

    def put(self, bodies: Sequence[str]) -> None:
        data = "".join(body + "\n" for body in bodies).encode("utf-8")
        # Any failure to open it is permanent: the writer then stops at once rather than retry a path that is wrong.
        files.append_delivered(
            self._path, data, files.DEAD_LETTER_MODE, name=f"the dead-letter file {self._path}", refused=(OSError,)
        )

    def store(self, body: str) -> dict[str, str]:
        """Store one entry as an overflow; return where it is, as the pointer entry says it."""
        self.put([body])
        return {"file": str(self._path), "sha256": digest(body)}

    def close(self) -> None:
        return None


class S3Destination:
    """One object per entry, so an entry of any size fits (as Lambda's S3 on-failure destination)."""

    def __init__(self, config: S3DestinationConfig, context: StreamContext) -> None:
        self.name = f"s3://{config.bucket}/{config.prefix}"
        self._bucket = config.bucket
        self._prefix = config.prefix
        self._client = clients.client(
            "s3", config.region or context.region, config.endpoint_url or context.endpoint_url, clients.DELIVERY
        )

    def put(self, bodies: Sequence[str]) -> None:
        for body in bodies:
            self.store(body)

    def store(self, body: str) -> dict[str, str]:
        key = object_key(self._prefix, body)
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - loaded with the client

        try:
            self._client.put_object(
                Bucket=self._bucket, Key=key, Body=body.encode("utf-8"), ContentType="application/json"
            )
        except (ClientError, BotoCoreError) as error:
            raise clients.dead_letter_error(error, self.name, missing=_S3_NO_BUCKET) from error
        return {"s3": f"s3://{self._bucket}/{key}"}

    def close(self) -> None:
        self._client.close()


def object_key(prefix: str, body: str) -> str:
    """prefix + application/YYYY-MM-DD/sequenceNumber-sink-digest.json; the same entry always gets the same key,
    so a retried put overwrites rather than adds."""
    document = json.loads(body)
    application = _key_part(str(document.get("application") or "unknown"))
    sink = _key_part(str(document.get("sink") or "none"))
    sequence = _key_part(str(document.get("sequenceNumber") or "0"))
    day = str(document.get("lastAttemptTime") or now().isoformat())[:10]
    return f"{prefix}{application}/{_key_part(day)}/{sequence}-{sink}-{digest(body)[:16]}.json"


def digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _key_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]", "_", text)[:200]


class Overflow(Protocol):
    def store(self, body: str) -> dict[str, str]: ...

    def close(self) -> None: ...


class QueueDestination:
    """An SQS queue or an SNS topic, one entry per message (dead letters are few; order is kept)."""

    def __init__(self, config: SqsDestinationConfig | SnsDestinationConfig, context: StreamContext) -> None:
        service = "sqs" if isinstance(config, SqsDestinationConfig) else "sns"
        self._target = config.queue_url if isinstance(config, SqsDestinationConfig) else config.topic_arn
        self.name = f"{service}:{self._target}"
        self._service = service
        self._fifo = self._target.endswith(".fifo")
        self._client = clients.client(
            service, config.region or context.region, config.endpoint_url or context.endpoint_url, clients.DELIVERY
        )
        self._overflow: Overflow | None = None
        if isinstance(config.overflow, S3DestinationConfig):
            self._overflow = S3Destination(config.overflow, context)
        elif isinstance(config.overflow, FileDestinationConfig):
            self._overflow = FileDestination(config.overflow)

    def put(self, bodies: Sequence[str]) -> None:
        for body in bodies:
            if len(body.encode("utf-8")) > MAX_QUEUE_MESSAGE_BYTES:
                body = self._oversize(body)  # noqa: PLW2901 - the entry that goes to the queue instead
            fifo: dict[str, str] = {}
            if self._fifo:
                fifo = {"MessageGroupId": "dead-letters", "MessageDeduplicationId": digest(body)}
            from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - loaded in __init__

            try:
                if self._service == "sqs":
                    self._client.send_message(QueueUrl=self._target, MessageBody=body, **fifo)
                else:
                    self._client.publish(TopicArn=self._target, Message=body, **fifo)
            except (ClientError, BotoCoreError) as error:
                raise clients.dead_letter_error(error, self.name) from error

    def _oversize(self, body: str) -> str:
        document = json.loads(body, parse_float=Decimal)
        size = len(body.encode("utf-8"))
        if self._overflow is not None:
            # Stored first: a pointer is only ever sent to an entry that is already stored whole.
            location = self._overflow.store(body)
            document.pop("rawData", None)
            return dumps({**document, "record": None, "overflow": location})
        log.error(
            "dead-letter entry too large for the destination: sent without the record's images; set "
            "on_failure.overflow to keep such entries whole",
            destination=self.name,
            size=size,
            limit=MAX_QUEUE_MESSAGE_BYTES,
            sequence_number=document.get("sequenceNumber"),
        )
        return truncated(document)

    def close(self) -> None:
        self._client.close()
        if self._overflow is not None:
            self._overflow.close()


def truncated(document: dict[str, Any]) -> str:
    """The entry without the record's images (or raw bytes): keys, eventID and sequenceNumber stay."""
    record = document.get("record")
    if isinstance(record, dict) and isinstance(record.get("dynamodb"), dict):
        images = {"NewImage", "OldImage"}
        record = {**record, "dynamodb": {k: v for k, v in record["dynamodb"].items() if k not in images}}
    error = dict(document.get("error") or {})
    error["message"] = str(error.get("message", ""))[:_ERROR_MESSAGE_CHARS]  # a sink's error may quote a body
    shorter = {k: v for k, v in document.items() if k != "rawData"} | {
        "record": record,
        "error": error,
        "truncated": True,
    }
    body = dumps(shorter)
    if len(body.encode("utf-8")) <= MAX_QUEUE_MESSAGE_BYTES:
        return body
    return dumps(shorter | {"record": None})  # not reached with DynamoDB's key sizes; the sequence number stays


def destination_warnings(config: Config) -> list[str]:
    """What the configuration lets through that loses part of an entry (the check-config and start-up warnings)."""
    on_failure = config.on_failure
    if isinstance(on_failure, SqsDestinationConfig | SnsDestinationConfig) and on_failure.overflow is None:
        warning = (
            f"on_failure: a dead-letter entry over {MAX_QUEUE_MESSAGE_BYTES // 1024} KiB (a large item) goes to the "
            f"{on_failure.type} destination without the record's images; the whole record can then only be read "
            "again from the stream, within 24 hours. Set on_failure.overflow (s3 or file) to keep it whole"
        )
        return [warning]
    return []


def check_destination(config: Config) -> None:
    """Before the engine starts: the on-failure destination (and its overflow) exists and can be written to.

    Raises a one-line StartupError naming the destination; a destination that exists but that the credentials may
    not describe is only warned about (the worker's role needs to write to it, not to read its attributes).
    """
    on_failure = config.on_failure
    if on_failure is None:
        return
    for warning in destination_warnings(config):
        log.warning(warning)
    _check(on_failure, config, "on_failure")
    overflow = getattr(on_failure, "overflow", None)
    if overflow is not None:
        _check(overflow, config, "on_failure.overflow")


def _check(
    destination: OnFailureConfig | FileDestinationConfig | S3DestinationConfig, config: Config, where: str
) -> None:
    if isinstance(destination, FileDestinationConfig):
        _check_file(destination.path, where)
        return
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - boto3 only where it is used

    region = destination.region or config.source.region
    endpoint_url = destination.endpoint_url or config.source.endpoint_url
    client = clients.client(_SERVICE[type(destination)], region, endpoint_url, clients.PREFLIGHT)
    if isinstance(destination, SqsDestinationConfig):
        what, missing = f"queue {destination.queue_url}", _SQS_NO_QUEUE
    elif isinstance(destination, SnsDestinationConfig):
        what, missing = f"topic {destination.topic_arn}", _SNS_NO_TOPIC
    else:
        what, missing = f"bucket {destination.bucket}", _S3_NO_BUCKET
    try:
        if isinstance(destination, SqsDestinationConfig):
            client.get_queue_attributes(QueueUrl=destination.queue_url, AttributeNames=["QueueArn"])
        elif isinstance(destination, SnsDestinationConfig):
            client.get_topic_attributes(TopicArn=destination.topic_arn)
        else:
            client.head_bucket(Bucket=destination.bucket)
    except ClientError as error:
        code = clients.error_code(error)
        if code in missing:
            raise StartupError(f"{where}: {what} does not exist") from None
        if code in _NOT_ALLOWED:
            # HeadBucket answers 403 for a bucket that exists but may not be listed: writing may still be allowed.
            log.warning("cannot check the on-failure destination", destination=what, error=code)
            return
        raise StartupError(f"{where}: cannot check {what}: {code}: {error}") from None
    except BotoCoreError as error:
        raise StartupError(f"{where}: cannot check {what}: {error}") from None
    finally:
        client.close()


def _check_file(path: Path, where: str) -> None:
    directory = path.parent
    if not directory.is_dir():
        raise StartupError(f"{where}: directory {directory} does not exist")
    if path.exists() and not path.is_file():
        raise StartupError(f"{where}: {path} is not a regular file")
    writable = os.access(path, os.W_OK) if path.exists() else os.access(directory, os.W_OK | os.X_OK)
    if not writable:
        raise StartupError(f"{where}: {path if path.exists() else directory} is not writable")


def now() -> datetime:
    return datetime.now(tz=UTC)
