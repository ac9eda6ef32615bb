"""The test-only stream re-enable hook behaves as DynamoDB does when a table's stream is disabled and enabled again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import moto_streams
import pytest
from botocore.exceptions import ClientError
from harness import put_product, unique

from consumer.local import LOCAL_REGION, MotoServer, create_streamed_table


@pytest.fixture(scope="module")
def streams_url(moto: MotoServer) -> Iterator[str]:
    del moto  # requested for the credentials and region it puts in the environment
    with moto_streams.serve() as url:
        yield url


def _read(streams: Any, arn: str, shard: str) -> tuple[list[str], bool]:
    """The keys of the shard's records from TRIM_HORIZON, and whether the shard ended (no next iterator)."""
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    page = streams.get_records(ShardIterator=iterator["ShardIterator"])
    return [r["dynamodb"]["Keys"]["productId"]["S"] for r in page["Records"]], "NextShardIterator" not in page


def test_stream_reenable_hook_self_test(streams_url: str) -> None:
    dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=streams_url)
    streams: Any = boto3.client("dynamodbstreams", region_name=LOCAL_REGION, endpoint_url=streams_url)
    table = unique("reenable")
    first = create_streamed_table(dynamodb, table)
    put_product(dynamodb, table, "before", price=1)

    dynamodb.update_table(TableName=table, StreamSpecification={"StreamEnabled": False})
    put_product(dynamodb, table, "while-disabled", price=2)  # the table still takes writes; no stream sees them
    described = dynamodb.describe_table(TableName=table)["Table"]
    assert described["LatestStreamArn"] == first
    assert "StreamSpecification" not in described
    old = streams.describe_stream(StreamArn=first)["StreamDescription"]
    assert old["StreamStatus"] == "DISABLED"
    (old_shard,) = old["Shards"]
    assert "EndingSequenceNumber" in old_shard["SequenceNumberRange"]

    dynamodb.update_table(
        TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    )
    put_product(dynamodb, table, "after", price=3)
    second = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    assert second != first
    new = streams.describe_stream(StreamArn=second)["StreamDescription"]
    assert new["StreamStatus"] == "ENABLED"
    (new_shard,) = new["Shards"]
    assert new_shard["ShardId"] != old_shard["ShardId"]  # unlike moto's own, as on DynamoDB
    assert int(new_shard["SequenceNumberRange"]["StartingSequenceNumber"]) > int(
        old_shard["SequenceNumberRange"]["EndingSequenceNumber"]
    )
    listed = streams.list_streams(TableName=table)["Streams"]
    assert [s["StreamArn"] for s in listed] == [first, second]

    assert _read(streams, first, old_shard["ShardId"]) == (["before"], True)  # closed, read to its end
    assert _read(streams, second, new_shard["ShardId"]) == (["after"], False)
    for arn, shard in ((first, new_shard["ShardId"]), (second, old_shard["ShardId"])):
        with pytest.raises(ClientError) as raised:
            streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError):
        dynamodb.update_table(
            TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
        )
    assert moto_streams.reenable_stream(dynamodb, table)[0] == second
    assert len(streams.list_streams(TableName=table)["Streams"]) == 3
