"""A child process appending to one file the way a record-processor child does, for the concurrency tests.

    python appender.py KIND PATH NAME GO STOP [--fail-every N] [--minimum M]

KIND is `sink` (the file sink, one plain line per message) or `destination` (the dead-letter file, one entry per
record, route "all", sink "out"). Each line carries an id NAME-I; the id is printed on stdout once the write
returned, i.e. once the line is fsynced. Appending starts when the file GO exists and ends once the file STOP
exists and at least M lines were acknowledged. With --fail-every N, every Nth write writes half its bytes, waits
long enough for the other appenders to write and fsync their own lines, then fails as a full disk does.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from consumer.config import FileDestinationConfig, FileSinkConfig
from consumer.deadletter import DeadLetter, FileDestination, entry
from consumer.decode import decode_record
from consumer.errors import DeliveryError, PermanentDeliveryError
from consumer.events import ChangeEvent, StreamContext
from consumer.formats import JSON
from consumer.sinks import Message, build_sink

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/2026-11-29T07:28:02.945"
CONTEXT = StreamContext(stream_arn=ARN, region="us-east-1")
WHEN = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def event(event_id: str, sequence: int) -> ChangeEvent:
    record = {
        "eventID": event_id,
        "eventName": "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": 1764403200000,
            "Keys": {"productId": {"S": event_id}},
            "NewImage": {"productId": {"S": event_id}, "price": {"N": "25.99"}},
            "SequenceNumber": str(sequence),
            "SizeBytes": 10,
        },
    }
    return decode_record(json.dumps(record).encode(), CONTEXT)


def dead_letter(event_id: str, sequence: int) -> str:
    letter = DeadLetter(
        "all", "out", PermanentDeliveryError("HTTP 400"), 1, WHEN, WHEN, str(sequence), event(event_id, sequence)
    )
    return entry(letter, "app", CONTEXT)


def writer(kind: str, path: Path) -> Callable[[str, int], None]:
    if kind == "sink":
        sink = build_sink(FileSinkConfig(type="file", path=path), CONTEXT)

        def send(event_id: str, sequence: int) -> None:
            body = json.dumps({"id": event_id})
            if sink.send([Message(event(event_id, sequence), "all", body, JSON)]):
                raise RuntimeError("the file sink reported a failure without raising")

        return send
    destination = FileDestination(FileDestinationConfig(type="file", path=path))
    return lambda event_id, sequence: destination.put([dead_letter(event_id, sequence)])


def fail_every(every: int) -> None:
    real_write = os.write
    calls = 0

    def write(fd: int, data: bytes) -> int:
        nonlocal calls
        calls += 1
        if calls % every:
            return real_write(fd, data)
        real_write(fd, bytes(data)[: len(data) // 2])
        time.sleep(0.15)
        raise OSError(errno.ENOSPC, "No space left on device")

    os.write = write


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["sink", "destination"])
    parser.add_argument("path", type=Path)
    parser.add_argument("name")
    parser.add_argument("go", type=Path)
    parser.add_argument("stop", type=Path)
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--minimum", type=int, default=1)
    parser.add_argument("--sequence-base", type=int, default=1000)
    args = parser.parse_args()
    put = writer(args.kind, args.path)
    if args.fail_every:
        fail_every(args.fail_every)
    while not args.go.exists():
        time.sleep(0.005)
    acknowledged = 0
    index = 0
    while acknowledged < args.minimum or not args.stop.exists():
        index += 1
        event_id = f"{args.name}-{index}"
        try:
            put(event_id, args.sequence_base + index)
        except DeliveryError:
            continue
        acknowledged += 1
        sys.stdout.write(event_id + "\n")
        sys.stdout.flush()
        time.sleep(0.002)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
