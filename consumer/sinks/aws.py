"""What the SNS, SQS and EventBridge sinks share: their clients, the batching, and the SNS and SQS entries.

Each sink sends its batch as a sequence of batch API calls (at most 10 entries and 256 KiB each), one after the
other: a chunk goes out only once the previous one was accepted, and after a failed chunk the later messages are
returned unsent as transient failures. Retrying them later keeps the per-key order the stream gave.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from consumer import clients
from consumer.errors import (
    DeliveryError,
    NotSentError,
    PermanentDeliveryError,
    ThrottledError,
    TransientDeliveryError,
)
from consumer.events import StreamContext
from consumer.jsontext import item_key
from consumer.sinks.base import Failure, Message

MAX_BATCH_ENTRIES = 10  # PublishBatch, SendMessageBatch and PutEvents all take at most 10 entries
MAX_REQUEST_BYTES = 262_144  # 256 KiB: the sum of the entries' sizes in one batch call
MAX_MESSAGE_BYTES = 262_144  # 256 KiB: one message (SQS: body plus attributes; EventBridge: the entry size)

# MessageGroupId and MessageDeduplicationId: 1 to 128 characters, ASCII letters, digits and punctuation.
_FIFO_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def client(service: str, config: Any, context: StreamContext) -> Any:
    """A sink's client (one per sink): the sink's region and endpoint, else the source's."""
    return clients.client(
        service, config.region or context.region, config.endpoint_url or context.endpoint_url, clients.DELIVERY
    )


def is_fifo(name: str) -> bool:
    return name.endswith(".fifo")


def fifo_id(text: str) -> str:
    """`text` if SNS and SQS take it as a group or deduplication id, else a stable digest of it."""
    if _FIFO_ID.match(text):
        return text
    # Cannot collide with a literal id: a key's JSON starts with "{" and an event id has no prefix like this.
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def group_id(message: Message) -> str:
    return fifo_id(item_key(message.event.keys))


def deduplication_id(message: Message) -> str:
    return fifo_id(message.event.event_id)


def utf8_size(text: str, what: str = "message body") -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise PermanentDeliveryError(f"{what} is not valid Unicode text (unpaired surrogate)") from error


def attribute_values(message: Message) -> dict[str, tuple[str, str]]:
    """The SNS and SQS message attributes: name -> (data type, value)."""
    return {"eventName": ("String", message.event.event_name.value), "table": ("String", message.event.table)}


def batch_entry(position: int, message: Message, body_field: str, *, fifo: bool) -> dict[str, Any]:
    """One entry of an SNS PublishBatch or an SQS SendMessageBatch call: they differ only in the body's field name.

    The entry's id is its position in the call (see `batch_failures`).
    """
    entry: dict[str, Any] = {
        "Id": str(position),
        body_field: message.body,
        "MessageAttributes": {
            name: {"DataType": data_type, "StringValue": value}
            for name, (data_type, value) in attribute_values(message).items()
        },
    }
    if fifo:
        entry["MessageGroupId"] = group_id(message)
        entry["MessageDeduplicationId"] = deduplication_id(message)
    return entry


def attributes_size(attributes: Mapping[str, tuple[str, str]]) -> int:
    """SNS and SQS count a message attribute as its name, its data type and its value, in UTF-8 bytes."""
    return sum(
        utf8_size(n, "attribute") + utf8_size(t, "attribute") + utf8_size(v, "attribute")
        for n, (t, v) in attributes.items()
    )


def check_size(size: int, limit: int = MAX_MESSAGE_BYTES) -> int:
    if size > limit:
        raise PermanentDeliveryError(f"oversize: {size} bytes > {limit}")
    return size


def entry_error(code: str, message: str, sender_fault: bool) -> DeliveryError:
    """An SNS or SQS batch entry's failure: the sender's fault is permanent, the service's is transient."""
    text = f"{code}: {message}" if message else code
    if sender_fault:
        return PermanentDeliveryError(text)
    return ThrottledError(text) if "Throttl" in code else TransientDeliveryError(text)


@dataclass(frozen=True, slots=True)
class EntryFailure:
    id: str
    code: str
    message: str
    sender_fault: bool


def batch_failures(
    count: int, successful_ids: Iterable[str], failed: Iterable[EntryFailure]
) -> list[tuple[int, DeliveryError]]:
    """Positions (entry ids are the index in the call) of the failed entries of an SNS or SQS batch call.

    An entry the response reports neither as successful nor as failed is a transient failure: it may or may
    not have been taken, and sending it again is the safe side (FIFO destinations deduplicate it).
    """
    errors: dict[int, DeliveryError] = {}
    for failure in failed:
        position = _position(failure.id, count)
        if position is not None:
            errors[position] = entry_error(failure.code, failure.message, failure.sender_fault)
    succeeded = {p for p in (_position(i, count) for i in successful_ids) if p is not None}
    for position in range(count):
        if position not in errors and position not in succeeded:
            errors[position] = TransientDeliveryError("the response has no result for this entry")
    return sorted(errors.items())


def _position(entry_id: str, count: int) -> int | None:
    return int(entry_id) if entry_id.isdigit() and int(entry_id) < count else None


# measure(message) -> the message's size in bytes, or raises PermanentDeliveryError if it can never be sent.
Measure = Callable[[Message], int]
# call(messages) -> (position in the call, error) for each entry the service did not take; raises on a whole-call
# failure.
Call = Callable[[Sequence[Message]], Sequence[tuple[int, DeliveryError]]]

UNSENT = "not sent: an earlier request of this batch failed (kept back to keep the per-key order)"


def chunks(
    sized: Sequence[tuple[int, Message, int]],
    max_entries: int = MAX_BATCH_ENTRIES,
    max_bytes: int = MAX_REQUEST_BYTES,
    group: Callable[[Message], str] | None = None,
) -> list[list[tuple[int, Message, int]]]:
    """Split (index, message, size) triples, in order, into calls of at most max_entries and max_bytes.

    With `group` (FIFO destinations), a call holds at most one message per group: if an entry fails while a later
    entry of its group in the same call succeeds, the resent one would land after it and break the item's order.
    """
    out: list[list[tuple[int, Message, int]]] = []
    current: list[tuple[int, Message, int]] = []
    groups: set[str] = set()
    total = 0
    for entry in sized:
        size = entry[2]
        key = group(entry[1]) if group else None
        if current and (len(current) == max_entries or total + size > max_bytes or key in groups):
            out.append(current)
            current, total, groups = [], 0, set()
        current.append(entry)
        total += size
        if key is not None:
            groups.add(key)
    if current:
        out.append(current)
    return out


def send_in_chunks(
    batch: Sequence[Message],
    measure: Measure,
    call: Call,
    operation: str,
    group: Callable[[Message], str] | None = None,
) -> list[Failure]:
    """Send `batch` chunk by chunk; return the failures in stream order. Never raises for an AWS error."""
    errors: dict[int, DeliveryError] = {}
    sized: list[tuple[int, Message, int]] = []
    for index, message in enumerate(batch):
        try:
            sized.append((index, message, measure(message)))
        except PermanentDeliveryError as error:
            errors[index] = error
    planned = chunks(sized, group=group)
    for number, chunk in enumerate(planned):
        messages = [message for _, message, _ in chunk]
        try:
            failed = call(messages)
        except (ClientError, BotoCoreError) as call_error:
            whole = clients.delivery_error(call_error, operation)
            failed = [(position, whole) for position in range(len(chunk))]
        for position, entry_failure in failed:
            errors[chunk[position][0]] = entry_failure
        if failed:
            for later in planned[number + 1 :]:
                for index, _, _ in later:
                    errors[index] = NotSentError(UNSENT)
            break
    return [Failure(batch[index], errors[index]) for index in sorted(errors)]
