"""Test-only: shard lineage for moto's DynamoDB Streams, which otherwise has one shard per table that never ends.

Patched into moto's classes in this process (so the server must be a ThreadedMotoServer here): closed shards
report EndingSequenceNumber and ParentShardId, DescribeStream honours ShardFilter CHILD_SHARDS, GetShardIterator
finds any shard of the lineage, and a closed shard's iterator stops handing out a next iterator once its records
are read. `split_shard` closes the table's current shard and starts a child that receives the later writes;
`fork_shard` closes it and starts two children that share the later writes by item key (two shards read at once,
each key's records in one of them, as DynamoDB does). `throttle_get_records` makes GetRecords answer
LimitExceededException for a while, as DynamoDB Streams does when a shard has too many readers.
Written against moto 5.2.*; `test_lineage_hook_self_test` fails loudly if an upgrade breaks it.
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.core.exceptions import JsonRESTError
from moto.dynamodb.exceptions import ResourceNotFoundException
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.table import StreamShard, Table
from moto.dynamodbstreams import models as streams_models
from moto.dynamodbstreams import responses as streams_responses
from moto.server import ThreadedMotoServer

from consumer.local import free_port

_INSTALLED = False
_THROTTLED_UNTIL = {"monotonic": 0.0}


class LimitExceededError(JsonRESTError):
    def __init__(self) -> None:
        super().__init__(
            "com.amazonaws.dynamodb.v20120810#LimitExceededException",
            "Rate exceeded for shard (test hook: throttle_get_records)",
        )


class _ByKey:
    """Stands in for a table's one stream shard: each write goes to one of the children, chosen by its key."""

    def __init__(self, table: Table, children: list[StreamShard]) -> None:
        self.table = table
        self.children = children
        self.created_on = children[0].created_on
        self.id = children[0].id

    def to_json(self) -> dict[str, Any]:
        return self.children[0].to_json()  # moto's DescribeStream asks; the patched one lists the whole lineage

    def add(self, old: Any, new: Any) -> None:
        item = new if new is not None else old
        # A stable choice: each key's records stay in one shard, in order.
        child = self.children[zlib.crc32(str(item.hash_key.value).encode()) % len(self.children)]
        child.add(old, new)


def _lineage(table: Table) -> list[StreamShard]:
    lineage: list[StreamShard] | None = getattr(table, "_consumer_lineage", None)
    if lineage is None:
        lineage = [table.stream_shard] if table.stream_shard else []
        table._consumer_lineage = lineage  # type: ignore[attr-defined]
    return lineage


def install() -> None:  # noqa: C901 - the five patches side by side
    global _INSTALLED  # noqa: PLW0603 - patches are process-wide, applied once
    if _INSTALLED:
        return
    original_to_json = StreamShard.to_json

    def to_json(self: StreamShard) -> dict[str, Any]:
        shard = original_to_json(self)
        ending = getattr(self, "ending_sequence_number", None)
        if ending is not None:
            shard["SequenceNumberRange"]["EndingSequenceNumber"] = str(ending)
        parent = getattr(self, "parent_shard_id", None)
        if parent is not None:
            shard["ParentShardId"] = parent
        return shard

    original_describe = streams_models.DynamoDBStreamsBackend.describe_stream

    def describe_stream(self: Any, arn: str, shard_filter: dict[str, Any] | None = None) -> dict[str, Any]:
        stream = original_describe(self, arn)
        shards = _lineage(self._get_table_from_arn(arn))
        if shard_filter and shard_filter.get("Type") == "CHILD_SHARDS":
            shards = [s for s in shards if getattr(s, "parent_shard_id", None) == shard_filter.get("ShardId")]
        stream["Shards"] = [s.to_json() for s in shards]
        return stream

    def handler_describe_stream(self: Any) -> Any:
        stream = self.backend.describe_stream(self._get_param("StreamArn"), self._get_param("ShardFilter"))
        return streams_responses.ActionResult({"StreamDescription": stream})

    def get_shard_iterator(
        self: Any, arn: str, shard_id: str, shard_iterator_type: str, sequence_number: str | None = None
    ) -> Any:
        table = self._get_table_from_arn(arn)
        shard = next((s for s in _lineage(table) if s.id == shard_id), None)
        if shard is None:
            raise ResourceNotFoundException(f"Shard {shard_id} not found")
        iterator = streams_models.ShardIterator(self, shard, shard_iterator_type, sequence_number)  # type: ignore[arg-type]
        self.shard_iterators[iterator.arn] = iterator
        return iterator

    original_get = streams_models.ShardIterator.get

    def iterator_get(self: Any, limit: int = 1000) -> dict[str, Any]:
        if time.monotonic() < _THROTTLED_UNTIL["monotonic"]:
            raise LimitExceededError
        result = original_get(self, limit)
        ending = getattr(self.stream_shard, "ending_sequence_number", None)
        if ending is not None:
            records = result["Records"]
            read_to = int(records[-1]["dynamodb"]["SequenceNumber"]) if records else self.sequence_number - 1
            if read_to >= ending:
                result.pop("NextShardIterator", None)  # the shard is closed and read to its end
        return result

    StreamShard.to_json = to_json  # type: ignore[method-assign]
    streams_models.DynamoDBStreamsBackend.describe_stream = describe_stream  # type: ignore[method-assign]
    streams_responses.DynamoDBStreamsHandler.describe_stream = handler_describe_stream  # type: ignore[method-assign]
    streams_models.DynamoDBStreamsBackend.get_shard_iterator = get_shard_iterator  # type: ignore[method-assign]
    streams_models.ShardIterator.get = iterator_get  # type: ignore[method-assign]
    _INSTALLED = True


def split_shard(table_name: str, account_id: str = "123456789012", region: str = "us-east-1") -> tuple[str, str]:
    """Close the table's current shard after its last record; new writes go to a child. Returns (parent, child)."""
    table = dynamodb_backends[account_id][region].get_table(table_name)
    lineage = _lineage(table)
    parent = table.stream_shard
    assert parent is not None
    assert parent.items, "split a shard that has records"
    parent.ending_sequence_number = parent.starting_sequence_number + len(parent.items) - 1  # type: ignore[attr-defined]
    child = StreamShard(account_id, table)
    child.id = f"shardId-{int(time.time() * 1000):020d}-{uuid.uuid4().hex[:8]}"
    child.starting_sequence_number = parent.ending_sequence_number + 1  # type: ignore[attr-defined]
    child.parent_shard_id = parent.id  # type: ignore[attr-defined]
    lineage.append(child)
    table.stream_shard = child
    return parent.id, child.id


def fork_shard(table_name: str, account_id: str = "123456789012", region: str = "us-east-1") -> tuple[str, list[str]]:
    """Close the table's current shard after its last record and start two children that share the later writes
    by item key. Returns (parent, [child, child])."""
    table = dynamodb_backends[account_id][region].get_table(table_name)
    lineage = _lineage(table)
    parent = table.stream_shard
    assert isinstance(parent, StreamShard), "fork a shard once"
    assert parent.items, "fork a shard that has records"
    parent.ending_sequence_number = parent.starting_sequence_number + len(parent.items) - 1  # type: ignore[attr-defined]
    children = []
    for index in range(2):
        child = StreamShard(account_id, table)
        child.id = f"shardId-{int(time.time() * 1000):020d}-{uuid.uuid4().hex[:8]}"
        # Far apart, so that the two children's sequence numbers never meet.
        child.starting_sequence_number = parent.ending_sequence_number + 1 + index * 10**12  # type: ignore[attr-defined]
        child.parent_shard_id = parent.id  # type: ignore[attr-defined]
        lineage.append(child)
        children.append(child)
    table.stream_shard = _ByKey(table, children)  # type: ignore[assignment]
    return parent.id, [child.id for child in children]


def throttle_get_records(seconds: float) -> None:
    """Every GetRecords of this process' moto server answers LimitExceededException for the next `seconds`."""
    _THROTTLED_UNTIL["monotonic"] = time.monotonic() + seconds


@contextmanager
def serve() -> Iterator[str]:
    """A moto server in this process with the hook installed (a moto server in its own process cannot split)."""
    install()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
