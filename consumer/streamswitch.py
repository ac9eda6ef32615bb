"""Which of a table's streams to read now: the decision behind a stream disabled and enabled again.

Enabling a table's stream again makes a new stream with a new ARN; the old one is closed (every shard ends) and
stays readable for 24 hours. The application keeps one lease table across streams, whose keys are bare shard ids
(the KCL's single-stream mode), so which stream a lease belongs to is found by the shard ids each stream lists.

The rules, applied at start and again whenever the table's latest stream is not the one being read:

- an older stream the application has positions in and has not read to its end is read first, oldest first, from
  TRIM_HORIZON for its shards without a lease (they were never read);
- once it is drained (every shard it leased is at SHARD_END and every child of those has a lease), the stream
  after it is read from TRIM_HORIZON, never LATEST: what was written to it before the switch must be delivered;
- an application whose positions are all in the stream it reads starts as configured.

Nothing here does I/O: the caller surveys the streams and the lease table (consumer.aws) and acts on the plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from consumer.config import StartingPosition
from consumer.errors import StartupError

SHARD_END = "SHARD_END"


@dataclass(frozen=True, slots=True)
class Stream:
    """One stream of the table: its ARN and its shards (shard id -> parent shard id, None for a root)."""

    arn: str
    shards: Mapping[str, str | None]

    @property
    def label(self) -> str:
        # The label is the stream's creation time in ISO-8601: sorting by it orders the streams by age.
        return self.arn.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Plan:
    """What the engine reads: `stream_arn`, with `position` for shards without a lease (None: the configured one).

    `shard_sync_at_start`: the lease table already holds leases (of another stream), so the KCL would skip its shard
    sync at start and leave the stream without leases for minutes; the engine syncs once itself.
    """

    stream_arn: str
    position: StartingPosition | None
    reason: str
    shard_sync_at_start: bool = False

    @property
    def switching(self) -> bool:
        return self.position is not None


def unfinished(stream: Stream, leases: Mapping[str, str]) -> list[str]:
    """The shards of `stream` the application still has to read: leased and not at SHARD_END, or not leased yet
    while their parent is (the KCL creates a child's lease when its parent ends)."""
    left = []
    for shard, parent in stream.shards.items():
        if shard in leases:
            if leases[shard] != SHARD_END:
                left.append(shard)
        elif parent is not None and parent in leases:
            left.append(shard)
    return left


def holds_positions(stream: Stream, leases: Mapping[str, str]) -> bool:
    return any(shard in leases for shard in stream.shards)


def plan_start(current: str, streams: Sequence[Stream], leases: Mapping[str, str]) -> Plan:
    """The stream to read given the table's latest stream `current`, the table's streams (`current` among them or
    not) and the lease table (lease key -> checkpoint)."""
    ordered = sorted({s.arn: s for s in streams}.values(), key=lambda s: s.label)
    if current not in {s.arn for s in ordered}:
        ordered.append(Stream(current, {}))
    _refuse_shared_shard_ids(ordered, leases)
    held = [s for s in ordered if holds_positions(s, leases)]
    if not held:
        if leases:
            # Positions of shards no stream lists any more: a stream read before and gone (24 hours after it was
            # disabled). What the current stream holds was never read by this application.
            return Plan(
                current,
                StartingPosition.TRIM_HORIZON,
                "the lease table holds positions of shards no stream of the table lists (an older stream, gone): "
                "reading the table's stream from its start",
                shard_sync_at_start=True,
            )
        return Plan(current, None, "first start")
    for stream in ordered:
        if stream.arn != current and stream in held and unfinished(stream, leases):
            return Plan(
                stream.arn,
                StartingPosition.TRIM_HORIZON,
                f"the application has not read stream {stream.arn} to its end: draining it before {current}",
                shard_sync_at_start=True,
            )
    last = held[-1]
    if last.arn == current:
        if len(held) > 1:
            # Reached by a switch: a shard of it without a lease (a lease the adapter's cleanup on a worker still on
            # the old stream deleted, a shard sync at start cut short) must be read from its start, never LATEST.
            return Plan(
                current,
                StartingPosition.TRIM_HORIZON,
                "resuming from the checkpoints after a stream switch: a shard without a lease is read from its start",
                shard_sync_at_start=True,
            )
        return Plan(current, None, "resuming from the checkpoints")
    following = ordered[ordered.index(last) + 1]
    return Plan(
        following.arn,
        StartingPosition.TRIM_HORIZON,
        f"stream {last.arn} is read to its end: reading {following.arn} from its start",
        shard_sync_at_start=True,
    )


def _refuse_shared_shard_ids(streams: Sequence[Stream], leases: Mapping[str, str]) -> None:
    # A lease key names a shard only; if two streams list the same shard id, one stream's checkpoint would be taken
    # for the other's (SHARD_END of the old shard would skip the new one). DynamoDB's shard ids carry their creation
    # time and a random part, so this is a guard, not a case the service expects to meet.
    owners: dict[str, str] = {}
    for stream in streams:
        for shard in stream.shards:
            if shard in leases and shard in owners and owners[shard] != stream.arn:
                raise StartupError(
                    f"shard id {shard} is listed by two streams of the table ({owners[shard]} and {stream.arn}): "
                    "the lease table cannot tell their positions apart. Start under a new application_name with "
                    "--starting-position TRIM_HORIZON"
                )
            owners.setdefault(shard, stream.arn)
