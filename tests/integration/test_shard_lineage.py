"""Shard end and parent-before-child on the real engine, with moto's shards split by a test hook."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import moto_lineage
import pytest
from harness import Worker, lease_items, put_product, unique

from consumer.local import LOCAL_REGION, MotoServer, create_streamed_table


@pytest.fixture(scope="module")
def lineage_url(moto: MotoServer) -> Iterator[str]:
    del moto  # requested for the credentials and region it puts in the environment
    with moto_lineage.serve() as url:
        yield url


def test_lineage_hook_self_test(lineage_url: str) -> None:
    dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=lineage_url)
    streams: Any = boto3.client("dynamodbstreams", region_name=LOCAL_REGION, endpoint_url=lineage_url)
    table = unique("lineage")
    arn = create_streamed_table(dynamodb, table)
    put_product(dynamodb, table, "a", price=1)
    parent, child = moto_lineage.split_shard(table)
    put_product(dynamodb, table, "b", price=2)
    shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    assert [s["ShardId"] for s in shards] == [parent, child]
    assert "EndingSequenceNumber" in shards[0]["SequenceNumberRange"]
    assert shards[1]["ParentShardId"] == parent
    children = streams.describe_stream(StreamArn=arn, ShardFilter={"Type": "CHILD_SHARDS", "ShardId": parent})
    assert [s["ShardId"] for s in children["StreamDescription"]["Shards"]] == [child]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=parent, ShardIteratorType="TRIM_HORIZON")
    page = streams.get_records(ShardIterator=iterator["ShardIterator"])
    assert [r["dynamodb"]["Keys"]["productId"]["S"] for r in page["Records"]] == ["a"]
    assert "NextShardIterator" not in page  # the closed parent is read to its end
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=child, ShardIteratorType="TRIM_HORIZON")
    page = streams.get_records(ShardIterator=iterator["ShardIterator"])
    assert [r["dynamodb"]["Keys"]["productId"]["S"] for r in page["Records"]] == ["b"]


def test_fork_and_throttle_hooks_self_test(lineage_url: str) -> None:
    dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=lineage_url)
    streams: Any = boto3.client("dynamodbstreams", region_name=LOCAL_REGION, endpoint_url=lineage_url)
    table = unique("fork")
    arn = create_streamed_table(dynamodb, table)
    put_product(dynamodb, table, "first", price=1)
    parent, children = moto_lineage.fork_shard(table)
    keys = [f"k{n}" for n in range(12)]
    for key in keys * 2:
        put_product(dynamodb, table, key, price=2)
    shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    assert [s["ShardId"] for s in shards] == [parent, *children]
    assert [s.get("ParentShardId") for s in shards] == [None, parent, parent]
    read: dict[str, list[str]] = {}
    for child in children:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=child, ShardIteratorType="TRIM_HORIZON")
        page = streams.get_records(ShardIterator=iterator["ShardIterator"])
        read[child] = [r["dynamodb"]["Keys"]["productId"]["S"] for r in page["Records"]]
    assert all(read.values()), "both children receive writes"
    assert sorted(read[children[0]] + read[children[1]]) == sorted(keys * 2)
    assert not set(read[children[0]]) & set(read[children[1]]), "each key stays in one shard"
    moto_lineage.throttle_get_records(30)
    try:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=children[0], ShardIteratorType="TRIM_HORIZON")
        with pytest.raises(streams.exceptions.LimitExceededException):
            streams.get_records(ShardIterator=iterator["ShardIterator"])
    finally:
        moto_lineage.throttle_get_records(0)
    assert streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]


@pytest.mark.engine
@pytest.mark.timeout(300)
def test_shard_end_checkpoints_and_the_child_follows_its_parent(
    lineage_url: str, start_worker: Callable[..., Worker]
) -> None:
    dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=lineage_url)
    table = unique("lineage")
    create_streamed_table(dynamodb, table)
    application = unique("app")
    worker = start_worker(application, table, source={"endpoint_url": lineage_url})
    for version in (1, 2, 3):
        put_product(dynamodb, table, "item", version=version)
    worker.wait_for(lambda events: len(events) >= 3)
    parent, child = moto_lineage.split_shard(table)
    for version in (4, 5, 6):
        put_product(dynamodb, table, "item", version=version)

    events = worker.wait_for(lambda evs: len(evs) >= 6, timeout=200)
    assert [int(e["new"]["version"]) for e in events] == [1, 2, 3, 4, 5, 6]  # the child after its parent
    assert worker.stop() == 0
    leases = lease_items(dynamodb, application)
    assert leases[parent]["checkpoint"]["S"] == "SHARD_END"  # shard_ended checkpointed the parent's end
    assert leases[child]["checkpoint"]["S"] == events[-1]["sequenceNumber"]
