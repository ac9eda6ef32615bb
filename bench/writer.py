"""The latency benchmark's writer: items at a fixed rate, in its own process.

Requests are written by hand on keep-alive connections: boto3 costs a few milliseconds of CPU per call, which
on two cores would make the writer, not the endpoint, the limit of the rate. moto does not check signatures.
Above 100 writes/s the items go in BatchWriteItem requests of rate/100 items (each item stamped with the time
just before its request): moto spends milliseconds per request, so one item per request caps it near 200/s.
Prints one JSON line at the end: written, achieved rate, how late the requests were against the schedule.

    python -m bench.writer --endpoint URL --table NAME --rate 200 --seconds 20 --prefix rate0-
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import sys
from typing import Any
from urllib.parse import urlsplit

from bench.workload import PacedWrites, Put

_HEADERS = {
    "Content-Type": "application/x-amz-json-1.0",
    # The credential scope names the region; the signature is not checked locally.
    "Authorization": (
        "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0"
    ),
}


def connector(endpoint: str, table: str) -> Put:
    parts = urlsplit(endpoint)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)

    def put(items: list[dict[str, Any]]) -> None:
        if len(items) == 1:
            target, request = "PutItem", {"TableName": table, "Item": items[0]}
        else:
            target, request = "BatchWriteItem", {"RequestItems": {table: [{"PutRequest": {"Item": i}} for i in items]}}
        headers = {**_HEADERS, "X-Amz-Target": f"DynamoDB_20120810.{target}"}
        connection.request("POST", "/", json.dumps(request), headers)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200 or b'"UnprocessedItems": {"' in body:  # noqa: PLR2004 - HTTP OK
            raise RuntimeError(f"{target} answered {response.status}: {body[:200]!r}")

    return put


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--prefix", default="live")
    parser.add_argument("--batch", type=int, help="items per request (default: 1 up to 100/s, then rate/100)")
    parser.add_argument("--threads", type=int, help="default: enough for 25 ms per request at the rate")
    args = parser.parse_args(argv)
    batch = args.batch or max(1, round(args.rate / 100))
    threads = args.threads or max(2, min(32, math.ceil(args.rate / batch / 40)))
    writes = PacedWrites(
        lambda: connector(args.endpoint, args.table),
        rate=args.rate,
        seconds=args.seconds,
        threads=threads,
        key_prefix=args.prefix,
        batch=batch,
    ).run()
    late = sorted(writes.late)
    sys.stdout.write(
        json.dumps(
            {
                "written": writes.written,
                "threads": threads,
                "batch": batch,
                "started": writes.started,
                "finished": writes.finished,
                "achieved_rate": writes.achieved_rate,
                "late_p50_ms": late[len(late) // 2] * 1000 if late else 0.0,
                "late_p95_ms": late[int(len(late) * 0.95)] * 1000 if late else 0.0,
            }
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
