"""streamswitch.plan_start: which of a table's streams to read, from the lease table and the streams' shards."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from consumer import aws
from consumer.aws import plan_stream
from consumer.config import StartingPosition
from consumer.errors import StartupError
from consumer.streamswitch import SHARD_END, Stream, plan_start, unfinished

OLD = "arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/2026-01-01T00:00:00.000"
MID = "arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/2026-01-02T00:00:00.000"
NEW = "arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/2026-01-03T00:00:00.000"
OLD_STREAM = Stream(OLD, {"shardId-old-1": None, "shardId-old-2": "shardId-old-1"})
MID_STREAM = Stream(MID, {"shardId-mid-1": None})
NEW_STREAM = Stream(NEW, {"shardId-new-1": None})


def test_a_first_start_and_a_resume_keep_the_configured_position() -> None:
    first = plan_start(NEW, [NEW_STREAM], {})
    assert (first.stream_arn, first.position, first.shard_sync_at_start) == (NEW, None, False)
    resumed = plan_start(NEW, [OLD_STREAM, NEW_STREAM], {"shardId-new-1": "42"})
    assert (resumed.stream_arn, resumed.position) == (NEW, None)


def test_an_old_stream_not_read_to_its_end_is_drained_first() -> None:
    for leases in (
        {"shardId-old-1": "17"},  # a position in the middle of the old stream
        {"shardId-old-1": SHARD_END},  # the parent ended, its child has no lease yet
        {"shardId-old-1": SHARD_END, "shardId-old-2": "TRIM_HORIZON"},
    ):
        plan = plan_start(NEW, [OLD_STREAM, NEW_STREAM], leases)
        assert (plan.stream_arn, plan.position, plan.shard_sync_at_start) == (OLD, StartingPosition.TRIM_HORIZON, True)
        assert OLD in plan.reason
        assert NEW in plan.reason


def test_a_drained_old_stream_moves_on_from_trim_horizon_never_latest() -> None:
    drained = {"shardId-old-1": SHARD_END, "shardId-old-2": SHARD_END}
    assert unfinished(OLD_STREAM, drained) == []
    plan = plan_start(NEW, [OLD_STREAM, NEW_STREAM], drained)
    assert (plan.stream_arn, plan.position, plan.shard_sync_at_start) == (NEW, StartingPosition.TRIM_HORIZON, True)
    # Once the new stream holds positions, while the old one's remain: a new-stream shard without a lease (its
    # lease deleted by a worker still on the old stream, a shard sync cut short) is still read from its start.
    moved = plan_start(NEW, [OLD_STREAM, NEW_STREAM], {**drained, "shardId-new-1": "TRIM_HORIZON"})
    assert (moved.stream_arn, moved.position, moved.shard_sync_at_start) == (NEW, StartingPosition.TRIM_HORIZON, True)
    # Once the old positions are cleaned up: as configured.
    settled = plan_start(NEW, [OLD_STREAM, NEW_STREAM], {"shardId-new-1": "42"})
    assert (settled.stream_arn, settled.position) == (NEW, None)


def test_a_stream_in_between_is_read_too() -> None:
    """Disabled and enabled twice: the stream after the drained one, not the latest, comes next."""
    drained = {"shardId-old-1": SHARD_END, "shardId-old-2": SHARD_END}
    streams = [NEW_STREAM, OLD_STREAM, MID_STREAM]  # in any order: the labels order them
    assert plan_start(NEW, streams, drained).stream_arn == MID
    assert plan_start(NEW, streams, {**drained, "shardId-mid-1": "5"}).stream_arn == MID
    plan = plan_start(NEW, streams, {**drained, "shardId-mid-1": SHARD_END})
    assert (plan.stream_arn, plan.position) == (NEW, StartingPosition.TRIM_HORIZON)


def test_positions_of_a_stream_gone_start_the_current_one_from_its_start() -> None:
    plan = plan_start(NEW, [NEW_STREAM], {"shardId-gone-1": SHARD_END})
    assert (plan.stream_arn, plan.position, plan.shard_sync_at_start) == (NEW, StartingPosition.TRIM_HORIZON, True)
    # Without the current stream's shards (it was not described), the same.
    assert plan_start(NEW, [], {"shardId-gone-1": "3"}).stream_arn == NEW


def test_a_shard_id_in_two_streams_is_refused() -> None:
    clash = Stream(NEW, {"shardId-old-1": None})
    with pytest.raises(StartupError, match="shardId-old-1 is listed by two streams"):
        plan_start(NEW, [OLD_STREAM, clash], {"shardId-old-1": SHARD_END})
    # Not leased, the shared id decides nothing.
    assert plan_start(NEW, [OLD_STREAM, clash], {}).stream_arn == NEW


def _without_list_streams(monkeypatch: pytest.MonkeyPatch, leases: dict[str, str]) -> None:
    shards = {stream.arn: dict(stream.shards) for stream in (OLD_STREAM, NEW_STREAM)}

    def denied(source: object, table: str) -> list[str]:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "ListStreams")

    monkeypatch.setattr(aws, "lease_checkpoints", lambda source, application: leases)
    monkeypatch.setattr(aws, "stream_shards", lambda source, arn: shards[arn])
    monkeypatch.setattr(aws, "table_stream_arns", denied)


def test_without_list_streams_the_stream_being_read_is_still_drained_first(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_list_streams(monkeypatch, {"shardId-old-1": "17"})
    plan = plan_stream(object(), "app", NEW, reading=OLD)  # type: ignore[arg-type]
    assert plan.stream_arn == OLD  # not a move to NEW that would leave the old stream's records behind


def test_without_list_streams_positions_no_known_stream_explains_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_list_streams(monkeypatch, {"shardId-old-1": "17"})
    with pytest.raises(StartupError, match="grant dynamodb:ListStreams"):
        plan_stream(object(), "app", NEW)  # type: ignore[arg-type]
