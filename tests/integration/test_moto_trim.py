"""The test-only trim hook behaves as DynamoDB Streams' retention does, and keeps the lineage hook working."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import moto_lineage
import moto_trim
import pytest
from botocore.exceptions import ClientError
from harness import put_product, unique

from consumer.local import LOCAL_REGION, MotoServer, create_streamed_table


@pytest.fixture(scope="module")
def trim_url(moto: MotoServer) -> Iterator[str]:
    del moto  # requested for the credentials and region it puts in the environment
    with moto_trim.serve() as url:
        yield url


def _keys(streams: Any, iterator: str) -> list[str]:
    return [r["dynamodb"]["Keys"]["productId"]["S"] for r in streams.get_records(ShardIterator=iterator)["Records"]]


def _trimmed(call: Any) -> None:
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value.response
    assert error["Error"]["Code"] == "TrimmedDataAccessException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_trim_hook_self_test(trim_url: str) -> None:
    dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=trim_url)
    streams: Any = boto3.client("dynamodbstreams", region_name=LOCAL_REGION, endpoint_url=trim_url)
    table = unique("trim")
    arn = create_streamed_table(dynamodb, table)
    for key in "abcde":
        put_product(dynamodb, table, key, price=1)
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    shard_id = shard["ShardId"]

    def iterator(kind: str, sequence: str | None = None) -> str:
        extra = {"SequenceNumber": sequence} if sequence else {}
        response = streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, ShardIteratorType=kind, **extra)
        return str(response["ShardIterator"])

    taken_before = iterator("TRIM_HORIZON")
    trimmed = moto_trim.trim(table, 3)
    assert len(trimmed) == 3
    assert trimmed[0] == shard["SequenceNumberRange"]["StartingSequenceNumber"]

    assert _keys(streams, iterator("TRIM_HORIZON")) == ["d", "e"]
    _trimmed(lambda: iterator("AT_SEQUENCE_NUMBER", trimmed[1]))
    _trimmed(lambda: iterator("AFTER_SEQUENCE_NUMBER", trimmed[2]))
    _trimmed(lambda: streams.get_records(ShardIterator=taken_before))
    oldest = str(int(trimmed[-1]) + 1)
    assert _keys(streams, iterator("AT_SEQUENCE_NUMBER", oldest)) == ["d", "e"]
    assert _keys(streams, iterator("AFTER_SEQUENCE_NUMBER", oldest)) == ["e"]

    # Composed with the lineage hook: a split still works, and the closed parent keeps its trim.
    parent, child = moto_lineage.split_shard(table)
    put_product(dynamodb, table, "f", price=1)
    assert parent == shard_id
    parent_iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=parent, ShardIteratorType="TRIM_HORIZON")
    assert _keys(streams, parent_iterator["ShardIterator"]) == ["d", "e"]
    child_iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=child, ShardIteratorType="TRIM_HORIZON")
    assert _keys(streams, child_iterator["ShardIterator"]) == ["f"]
