"""`consumer status`: the application's leases as the KCL keeps them, one line per shard, with a lag estimate.

Read-only: the lease table (the application name), the coordinator state table for the leader, and one
GetRecords per open shard after its checkpoint. The lag estimate is the age of the oldest record not yet
checkpointed (0 when nothing follows the checkpoint); it needs the stream, so it is left out with --no-lag.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from consumer import clients
from consumer.aws import client
from consumer.config import Config
from consumer.errors import StartupError

# Checkpoint values that are positions rather than sequence numbers.
_SENTINELS = {"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "SHARD_END"}


@dataclass(frozen=True, slots=True)
class ShardStatus:
    shard_id: str
    owner: str | None
    checkpoint: str | None
    parents: tuple[str, ...]
    state: str  # processing, not started, unassigned, ended
    lag_seconds: float | None  # None: not estimated (ended shard, or --no-lag)
    lease_counter: int | None


@dataclass(frozen=True, slots=True)
class Status:
    application: str
    stream_arn: str | None
    leader: str | None
    shards: tuple[ShardStatus, ...]

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def as_table(self) -> str:
        header = ("shard", "owner", "state", "checkpoint", "lag", "parent")
        rows = [
            (
                shard.shard_id,
                shard.owner or "-",
                shard.state,
                shard.checkpoint or "-",
                "-" if shard.lag_seconds is None else f"{shard.lag_seconds:.1f}s",
                ",".join(shard.parents) or "-",
            )
            for shard in self.shards
        ]
        widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
        lines = [
            f"application {self.application}"
            + (f", stream {self.stream_arn}" if self.stream_arn else "")
            + f", leader {self.leader or '-'}",
            "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
            "  ".join("-" * w for w in widths),
        ]
        lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
        owners: dict[str, int] = {}
        for shard in self.shards:
            if shard.state == "processing" and shard.owner:
                owners[shard.owner] = owners.get(shard.owner, 0) + 1
        summary = ", ".join(f"{owner}: {count}" for owner, count in sorted(owners.items())) or "none"
        lines.append(f"{len(self.shards)} lease(s); held per worker: {summary}")
        return "\n".join(line.rstrip() for line in lines)


def read_status(config: Config, *, with_lag: bool = True, now: datetime | None = None) -> Status:
    dynamodb = client("dynamodb", config.source, clients.STATUS)
    application = config.application_name
    try:
        items = _scan(dynamodb, application)
    except ClientError as error:
        code = clients.error_code(error)
        if code == "ResourceNotFoundException":
            raise StartupError(f"no lease table {application!r}: the application has not run yet") from None
        raise StartupError(f"cannot read the lease table {application!r}: {code}: {error}") from None
    except BotoCoreError as error:
        raise StartupError(f"cannot read the lease table {application!r}: {error}") from None
    leader = _leader(dynamodb, application)
    stream_arn = config.source.stream_arn
    if stream_arn is None and with_lag:
        from consumer.aws import resolve_stream_arn  # noqa: PLC0415

        stream_arn = resolve_stream_arn(config.source)
    streams = client("dynamodbstreams", config.source, clients.STATUS) if with_lag and stream_arn else None
    moment = now or datetime.now(UTC)
    shards = []
    for item in sorted(items, key=lambda i: str(i.get("leaseKey", {}).get("S", ""))):
        shard = _shard(item)
        lag = None
        if (
            streams is not None
            and stream_arn is not None
            and shard.state in {"processing", "not started", "unassigned"}
        ):
            lag = _lag(streams, stream_arn, shard, moment)
        shards.append(
            ShardStatus(
                shard.shard_id,
                shard.owner,
                shard.checkpoint,
                shard.parents,
                shard.state,
                lag,
                shard.lease_counter,
            )
        )
    return Status(application, stream_arn, leader, tuple(shards))


def _scan(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _leader(dynamodb: Any, application: str) -> str | None:
    try:
        items = _scan(dynamodb, f"{application}-CoordinatorState")
    except (ClientError, BotoCoreError):
        return None  # no coordinator table yet, or no right to read it: the leader is a detail
    owners = [item["ownerName"]["S"] for item in items if "ownerName" in item]
    return owners[0] if owners else None


def _shard(item: Mapping[str, Any]) -> ShardStatus:
    shard_id = str(item["leaseKey"]["S"])
    owner = item.get("leaseOwner", {}).get("S")
    checkpoint = item.get("checkpoint", {}).get("S")
    parents = tuple(sorted(item.get("parentShardId", {}).get("SS", [])))
    counter = item.get("leaseCounter", {}).get("N")
    if checkpoint == "SHARD_END":
        state = "ended"
    elif not owner:
        state = "unassigned"
    elif checkpoint in _SENTINELS:
        state = "not started"
    else:
        state = "processing"
    return ShardStatus(shard_id, owner, checkpoint, parents, state, None, int(counter) if counter else None)


def _lag(streams: Any, stream_arn: str, shard: ShardStatus, now: datetime) -> float | None:
    """Age of the first record after the checkpoint; 0 when the shard holds nothing newer."""
    request: dict[str, Any] = {"StreamArn": stream_arn, "ShardId": shard.shard_id}
    if shard.checkpoint and shard.checkpoint not in _SENTINELS:
        request |= {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": shard.checkpoint}
    elif shard.checkpoint == "LATEST":
        return 0.0
    else:
        request["ShardIteratorType"] = "TRIM_HORIZON"
    try:
        iterator = streams.get_shard_iterator(**request)["ShardIterator"]
        records = streams.get_records(ShardIterator=iterator, Limit=1).get("Records", [])
    except (ClientError, BotoCoreError):
        return None  # trimmed past the checkpoint, or no right to read: no estimate rather than a wrong one
    if not records:
        return 0.0
    created = records[0]["dynamodb"]["ApproximateCreationDateTime"]
    moment = created if isinstance(created, datetime) else datetime.fromtimestamp(float(created), UTC)
    return max(0.0, (now - moment).total_seconds())
