"""Test-only: trimming for moto's DynamoDB Streams, which otherwise keeps every record of a shard for ever.

Patched into moto's classes in this process (so the server must be a ThreadedMotoServer here), on top of the
shard-lineage hook (installed first, so that the two compose in either order of use). `trim(table, count)` makes
the first `count` records of the table's current shard unavailable, as the stream's 24-hour retention does:
TRIM_HORIZON starts after them, AT/AFTER_SEQUENCE_NUMBER at a trimmed sequence number and GetRecords with an
iterator that points at one fail with TrimmedDataAccessException (HTTP 400, as DynamoDB Streams answers).
DescribeStream is left alone: a shard's StartingSequenceNumber is where the shard began, not what is left of it.
Written against moto 5.2.*; `test_trim_hook_self_test` fails loudly if an upgrade breaks it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import moto_lineage
from moto.core.exceptions import JsonRESTError
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.table import StreamShard
from moto.dynamodbstreams import models as streams_models
from moto.server import ThreadedMotoServer

from consumer.local import free_port

_INSTALLED = False


class TrimmedDataAccessError(JsonRESTError):
    """DynamoDB Streams' TrimmedDataAccessException, as its JSON protocol answers it."""

    def __init__(self) -> None:
        super().__init__(
            "com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException",
            "The operation attempted to read past the oldest stream record in a shard.",
        )


def _trimmed_to(shard: StreamShard) -> int:
    """The shard's oldest sequence number still available (its first one when nothing was trimmed)."""
    return int(getattr(shard, "_consumer_trimmed_to", shard.starting_sequence_number))


def install() -> None:
    global _INSTALLED  # noqa: PLW0603 - patches are process-wide, applied once
    if _INSTALLED:
        return
    # Lineage replaces get_shard_iterator rather than wrapping it: it must be in place before this wraps it.
    moto_lineage.install()
    current_get_shard_iterator = streams_models.DynamoDBStreamsBackend.get_shard_iterator

    def get_shard_iterator(
        self: Any, arn: str, shard_id: str, shard_iterator_type: str, sequence_number: int | None = None
    ) -> Any:
        iterator = current_get_shard_iterator(self, arn, shard_id, shard_iterator_type, sequence_number)
        oldest = _trimmed_to(iterator.stream_shard)
        if shard_iterator_type == "TRIM_HORIZON":
            iterator.sequence_number = max(iterator.sequence_number, oldest)
        elif shard_iterator_type in {"AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"} and (sequence_number or 0) < oldest:
            del self.shard_iterators[iterator.arn]
            raise TrimmedDataAccessError
        return iterator

    current_get = streams_models.ShardIterator.get

    def iterator_get(self: Any, limit: int = 1000) -> dict[str, Any]:
        # An iterator taken before the trim that still points at a trimmed record.
        if self.sequence_number < _trimmed_to(self.stream_shard):
            raise TrimmedDataAccessError
        result: dict[str, Any] = current_get(self, limit)
        return result

    streams_models.DynamoDBStreamsBackend.get_shard_iterator = get_shard_iterator  # type: ignore[method-assign]
    streams_models.ShardIterator.get = iterator_get  # type: ignore[method-assign]
    _INSTALLED = True


def trim(table_name: str, count: int, account_id: str = "123456789012", region: str = "us-east-1") -> list[str]:
    """Make the first `count` records of the table's current shard unavailable; returns their sequence numbers."""
    shard = dynamodb_backends[account_id][region].get_table(table_name).stream_shard
    assert shard is not None
    assert 0 < count <= len(shard.items), f"trim {count} of {len(shard.items)} records"
    shard._consumer_trimmed_to = shard.starting_sequence_number + count  # type: ignore[attr-defined]
    return [str(shard.starting_sequence_number + index) for index in range(count)]


@contextmanager
def serve() -> Iterator[str]:
    """A moto server in this process with the lineage and trim hooks installed."""
    install()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
