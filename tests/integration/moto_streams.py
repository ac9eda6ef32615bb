"""Test-only: a table's stream disabled and enabled again, for moto's DynamoDB Streams, which otherwise breaks the
table when its stream is disabled (every later write fails) and refuses to enable it again.

Patched into moto's classes in this process (so the server must be a ThreadedMotoServer here), on top of the
shard-lineage hook. UpdateTable with `StreamEnabled: false` closes the stream as DynamoDB does: every shard ends
after its last record, DescribeStream answers StreamStatus DISABLED, the records stay readable, later writes are not
captured, and DescribeTable keeps naming it as the latest stream. UpdateTable with `StreamEnabled: true` then makes a
new stream: a new label (so a new ARN), and a shard whose id carries its creation time as DynamoDB's do (moto's own
id is the same in every stream) and whose sequence numbers follow the old stream's. DescribeStream,
GetShardIterator and ListStreams answer for each stream of the table by its ARN; an unknown label is
ResourceNotFoundException, and so is a shard asked of a stream that does not have it.
Written against moto 5.2.*; `test_stream_reenable_hook_self_test` fails loudly if an upgrade breaks it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import moto_lineage
from moto.dynamodb.exceptions import ResourceNotFoundException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import StreamShard, Table
from moto.dynamodbstreams import models as streams_models
from moto.server import ThreadedMotoServer

from consumer.local import free_port

_INSTALLED = False
# Far past the old stream's last record, as a new stream's sequence numbers are on DynamoDB.
_SEQUENCE_GAP = 10**6


@dataclass
class _Disabled:
    label: str
    view_type: str
    created_on: Any
    shards: list[StreamShard]


def _disabled(table: Table) -> dict[str, _Disabled]:
    streams: dict[str, _Disabled] | None = getattr(table, "_consumer_disabled_streams", None)
    if streams is None:
        streams = {}
        table._consumer_disabled_streams = streams  # type: ignore[attr-defined]
    return streams


def _label(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _disable(table: Table) -> None:
    spec = table.stream_specification or {}
    label = table.latest_stream_label
    assert spec.get("StreamEnabled"), f"the stream of {table.name} is not enabled"
    assert label is not None
    shards = list(moto_lineage._lineage(table))  # the lineage hook's own record of the table's shards
    for shard in shards:
        if getattr(shard, "ending_sequence_number", None) is None:
            shard.ending_sequence_number = shard.starting_sequence_number + len(shard.items) - 1  # type: ignore[attr-defined]
    created = shards[0].created_on if shards else None
    _disabled(table)[label] = _Disabled(label, spec["StreamViewType"], created, shards)
    table.stream_shard = None  # later writes are not captured
    table.stream_specification = {"StreamEnabled": False}


def _enable(table: Table, spec: dict[str, Any]) -> None:
    old = table.latest_stream_label
    last = max(
        (s.starting_sequence_number + len(s.items) for d in _disabled(table).values() for s in d.shards),
        default=0,
    )
    table.set_stream_specification(dict(spec))
    while table.latest_stream_label == old:  # labels are timestamps: never two streams with one
        time.sleep(0.001)
        table.set_stream_specification(dict(spec))
    shard = table.stream_shard
    assert shard is not None
    shard.id = f"shardId-{int(time.time() * 1000):020d}-{uuid.uuid4().hex[:8]}"
    shard.starting_sequence_number = max(shard.starting_sequence_number, last + _SEQUENCE_GAP)
    table._consumer_lineage = [shard]  # type: ignore[attr-defined]


def _description(table: Table, arn: str, stream: _Disabled, shard_filter: dict[str, Any] | None) -> dict[str, Any]:
    shards = stream.shards
    if shard_filter and shard_filter.get("Type") == "CHILD_SHARDS":
        shards = [s for s in shards if getattr(s, "parent_shard_id", None) == shard_filter.get("ShardId")]
    return {
        "StreamArn": arn,
        "StreamLabel": stream.label,
        "StreamStatus": "DISABLED",
        "StreamViewType": stream.view_type,
        "CreationRequestDateTime": stream.created_on,
        "TableName": table.name,
        "KeySchema": table.schema,
        "Shards": [s.to_json() for s in shards],
    }


def install() -> None:  # noqa: C901 - the four patches side by side
    global _INSTALLED  # noqa: PLW0603 - patches are process-wide, applied once
    if _INSTALLED:
        return
    moto_lineage.install()
    original_update = DynamoDBBackend.update_table_streams

    def update_table_streams(self: Any, table: Table, spec: dict[str, Any]) -> None:
        enabled = bool((table.stream_specification or {}).get("StreamEnabled"))
        if spec.get("StreamEnabled") is False and enabled:
            _disable(table)
        elif spec.get("StreamEnabled") and not enabled and table.latest_stream_label:
            _enable(table, spec)
        else:
            original_update(self, table, spec)

    lineage_describe = streams_models.DynamoDBStreamsBackend.describe_stream

    def describe_stream(self: Any, arn: str, shard_filter: dict[str, Any] | None = None) -> dict[str, Any]:
        table = self._get_table_from_arn(arn)
        stream = _disabled(table).get(_label(arn))
        if stream is not None:
            return _description(table, arn, stream, shard_filter)
        if _label(arn) != table.latest_stream_label:
            raise ResourceNotFoundException(f"Requested resource not found: Stream: {arn} not found")
        result: dict[str, Any] = lineage_describe(self, arn, shard_filter)
        return result

    lineage_get_shard_iterator = streams_models.DynamoDBStreamsBackend.get_shard_iterator

    def get_shard_iterator(
        self: Any, arn: str, shard_id: str, shard_iterator_type: str, sequence_number: int | None = None
    ) -> Any:
        table = self._get_table_from_arn(arn)
        stream = _disabled(table).get(_label(arn))
        if stream is None:
            if _label(arn) != table.latest_stream_label:
                raise ResourceNotFoundException(f"Requested resource not found: Stream: {arn} not found")
            return lineage_get_shard_iterator(self, arn, shard_id, shard_iterator_type, sequence_number)
        shard = next((s for s in stream.shards if s.id == shard_id), None)
        if shard is None:
            raise ResourceNotFoundException(f"Requested resource not found: Shard {shard_id} not found")
        iterator = streams_models.ShardIterator(self, shard, shard_iterator_type, sequence_number)
        self.shard_iterators[iterator.arn] = iterator
        return iterator

    def list_streams(self: Any, table_name: str | None = None) -> list[dict[str, Any]]:
        streams = []
        for table in self.dynamodb.tables.values():
            if table_name is not None and table.name != table_name:
                continue
            labels = set(_disabled(table))
            if table.latest_stream_label:
                labels.add(table.latest_stream_label)
            streams += [
                {"StreamArn": f"{table.table_arn}/stream/{label}", "TableName": table.name, "StreamLabel": label}
                for label in sorted(labels)
            ]
        return streams

    DynamoDBBackend.update_table_streams = update_table_streams  # type: ignore[method-assign]
    streams_models.DynamoDBStreamsBackend.describe_stream = describe_stream  # type: ignore[method-assign]
    streams_models.DynamoDBStreamsBackend.get_shard_iterator = get_shard_iterator  # type: ignore[method-assign]
    streams_models.DynamoDBStreamsBackend.list_streams = list_streams  # type: ignore[method-assign]
    _INSTALLED = True


def reenable_stream(dynamodb: Any, table: str, view_type: str = "NEW_AND_OLD_IMAGES") -> tuple[str, str]:
    """Disable the table's stream and enable a new one, as an operator does to change its view type, through
    UpdateTable. Returns (old stream ARN, new stream ARN)."""
    old = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    dynamodb.update_table(TableName=table, StreamSpecification={"StreamEnabled": False})
    dynamodb.update_table(TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type})
    new = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    assert new != old
    return old, new


@contextmanager
def serve() -> Iterator[str]:
    """A moto server in this process with the lineage and stream re-enable hooks installed."""
    install()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
