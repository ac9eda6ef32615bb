"""The fault suite's oracle: a writer with per-key version counters, and the check of what arrived.

Nothing lost: every (key, version) written was delivered or dead-lettered. Per-key order: after dropping repeated
eventIDs, each key's versions arrive in increasing order. Duplicates: repeated eventIDs, within a stated bound.
Silent skips: records neither delivered nor dead-lettered that nevertheless lie behind their shard's checkpoint in
the lease table (the stream is read back to find each record's shard and sequence number): a loss the service
would never notice by itself, the worst kind.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3

RESULTS: list[Outcome] = []


@dataclass
class Writer:
    """Updates `keys` items round-robin, each put carrying the item's next version."""

    dynamodb: Any
    table: str
    keys: int = 5
    written: list[tuple[str, int]] = field(default_factory=list)
    _versions: dict[str, int] = field(default_factory=dict)

    def write(self, count: int, *, per_second: float = 0.0, **attributes: Any) -> None:
        for _ in range(count):
            key = f"k{len(self.written) % self.keys}"
            version = self._versions.get(key, 0) + 1
            self._versions[key] = version
            item = {"productId": {"S": key}, "version": {"N": str(version)}}
            item.update({name: {"S": str(value)} for name, value in attributes.items()})
            self.dynamodb.put_item(TableName=self.table, Item=item)
            self.written.append((key, version))
            if per_second:
                time.sleep(1 / per_second)

    def write_in_background(self, count: int, per_second: float) -> threading.Thread:
        thread = threading.Thread(target=self.write, args=(count,), kwargs={"per_second": per_second}, daemon=True)
        thread.start()
        return thread


@dataclass
class Outcome:
    scenario: str
    written: int
    delivered: int
    duplicated: int
    dead_lettered: int
    lost: int
    silent_skips: int
    recovery_seconds: float | None


def delivered_pairs(events: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(eventID, key, version) from plain payloads or Lambda-shaped records, in arrival order."""
    pairs = []
    for event in events:
        if "dynamodb" in event:  # the lambda format
            key = event["dynamodb"]["Keys"]["productId"]["S"]
            version = int(event["dynamodb"]["NewImage"]["version"]["N"])
        else:
            key = event["keys"]["productId"]
            version = int(event["new"]["version"])
        pairs.append((event["eventID"], key, version))
    return pairs


def stream_positions(writer: Writer) -> dict[tuple[str, int], tuple[str, str]]:
    """(key, version) -> (shard id, sequence number), read back from TRIM_HORIZON from every stream of the table
    (a stream disabled and enabled again leaves the old one beside the new)."""
    endpoint = writer.dynamodb.meta.endpoint_url
    region = writer.dynamodb.meta.region_name
    streams: Any = boto3.client("dynamodbstreams", region_name=region, endpoint_url=endpoint)
    positions: dict[tuple[str, int], tuple[str, str]] = {}
    for listed in streams.list_streams(TableName=writer.table)["Streams"]:
        positions.update(_positions_in(streams, listed["StreamArn"]))
    return positions


def _positions_in(streams: Any, arn: str) -> dict[tuple[str, int], tuple[str, str]]:
    positions: dict[tuple[str, int], tuple[str, str]] = {}
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        ).get("ShardIterator")
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                image = record["dynamodb"].get("NewImage") or {}
                if "version" in image:
                    key = record["dynamodb"]["Keys"]["productId"]["S"]
                    positions[(key, int(image["version"]["N"]))] = (
                        shard["ShardId"],
                        record["dynamodb"]["SequenceNumber"],
                    )
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return positions


def resolve_truncated(writer: Writer, letters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dead-letter entries as the oracle counts them, entries sent without their images (`"truncated": true`)
    included: such an entry names its record by keys and sequence number, and only the stream holds the rest, so
    the version is read back from the stream. The record is in the destination and can be found: dead-lettered,
    not lost."""
    by_sequence = {sequence: pair for pair, (_, sequence) in stream_positions(writer).items()}
    resolved = []
    for letter in letters:
        if not letter.get("truncated"):
            resolved.append(letter)
            continue
        record = letter["record"]
        key, version = by_sequence[letter["sequenceNumber"]]
        assert record["dynamodb"]["Keys"] == {"productId": {"S": key}}, f"{letter['sequenceNumber']}: other keys"
        image = {"productId": {"S": key}, "version": {"N": str(version)}}
        resolved.append({**letter, "record": {**record, "dynamodb": {**record["dynamodb"], "NewImage": image}}})
    return resolved


def silent_skips(writer: Writer, application: str, missing: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The missing records that lie at or behind their shard's checkpoint: the service considers them done."""
    if not missing:
        return []
    items = writer.dynamodb.scan(TableName=application, ConsistentRead=True)["Items"]
    checkpoints = {item["leaseKey"]["S"]: item.get("checkpoint", {}).get("S", "") for item in items}
    positions = stream_positions(writer)
    skipped = []
    for pair in missing:
        if pair not in positions:
            continue
        shard, sequence = positions[pair]
        checkpoint = checkpoints.get(shard, "")
        if checkpoint == "SHARD_END" or (checkpoint.isdigit() and int(checkpoint) >= int(sequence)):
            skipped.append(pair)
    return skipped


def check(
    scenario: str,
    writer: Writer,
    delivered: list[dict[str, Any]],
    *,
    application: str,
    dead_letters: list[dict[str, Any]] | None = None,
    max_duplicates: int = 0,
    recovery_seconds: float | None = None,
    streams: list[list[dict[str, Any]]] | None = None,
) -> Outcome:
    """`application`: whose lease table holds the checkpoints that must not pass a missing record.

    `streams`: with several workers, what each one delivered, in its own order (files of different workers
    cannot be merged into one timeline); order is checked within each, loss and duplicates across all."""
    pairs = delivered_pairs(delivered)
    dead = delivered_pairs([letter["record"] for letter in dead_letters or []])
    counts = Counter(event_id for event_id, _, _ in pairs)
    duplicated = sum(n - 1 for n in counts.values())
    settled = {(key, version) for _, key, version in pairs + dead}
    lost = [pair for pair in writer.written if pair not in settled]
    skipped = silent_skips(writer, application, lost)
    outcome = Outcome(
        scenario, len(writer.written), len(counts), duplicated, len(dead), len(lost), len(skipped), recovery_seconds
    )
    RESULTS.append(outcome)

    assert not skipped, f"{scenario}: silently skipped (behind the checkpoint) {skipped[:10]}"
    assert not lost, f"{scenario}: lost {lost[:10]}"
    seen: set[str] = set()
    for stream in [delivered_pairs(s) for s in streams] if streams is not None else [pairs]:
        last: dict[str, int] = {}
        for event_id, key, version in stream:
            if event_id in seen:
                continue
            seen.add(event_id)
            assert version > last.get(key, 0), f"{scenario}: {key} version {version} after {last.get(key)}"
            last[key] = version
    assert duplicated <= max_duplicates, f"{scenario}: {duplicated} duplicates > {max_duplicates}"
    return outcome


def table() -> str:
    header = ("scenario", "written", "delivered", "duplicated", "dead-lettered", "lost", "silent skips", "recovery s")
    rows = [
        (
            o.scenario,
            o.written,
            o.delivered,
            o.duplicated,
            o.dead_lettered,
            o.lost,
            o.silent_skips,
            "-" if o.recovery_seconds is None else f"{o.recovery_seconds:.1f}",
        )
        for o in RESULTS
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=False)]
    line = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True))
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])
