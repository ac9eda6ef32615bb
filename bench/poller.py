"""The hand-written baseline: one loop, DescribeStream, GetShardIterator at TRIM_HORIZON, GetRecords per shard.

It decodes nothing and only counts, so it is the cheapest a Python reader of the stream can be with boto3.
Prints one JSON line per non-empty batch ({"t": epoch seconds, "count": records so far}) and exits once
`--expected` records were read, or after `--timeout` seconds.

    python -m bench.poller --endpoint URL --stream-arn ARN --expected 50000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import boto3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--stream-arn", required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--max-records", type=int, default=1000)
    parser.add_argument("--poll-interval-ms", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    streams: Any = boto3.client("dynamodbstreams", region_name=args.region, endpoint_url=args.endpoint)
    shards = streams.describe_stream(StreamArn=args.stream_arn)["StreamDescription"]["Shards"]
    iterators: dict[str, str | None] = {
        shard["ShardId"]: streams.get_shard_iterator(
            StreamArn=args.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for shard in shards
    }
    count = 0
    deadline = time.monotonic() + args.timeout
    while count < args.expected and time.monotonic() < deadline:
        empty = True
        for shard_id, iterator in iterators.items():
            if iterator is None:
                continue  # a closed shard read to its end
            response = streams.get_records(ShardIterator=iterator, Limit=args.max_records)
            iterators[shard_id] = response.get("NextShardIterator")
            if response["Records"]:
                empty = False
                count += len(response["Records"])
                sys.stdout.write(json.dumps({"t": time.time(), "count": count}) + "\n")
                sys.stdout.flush()
        if empty:
            # Like the KCL, wait only when there was nothing to read: a backlog is read back to back.
            time.sleep(args.poll_interval_ms / 1000)
    return 0 if count >= args.expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
