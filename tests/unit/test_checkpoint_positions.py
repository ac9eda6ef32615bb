"""checkpoint.Positions: the one place that decides where a child may checkpoint."""

from __future__ import annotations

from consumer.checkpoint import Positions


def test_a_read_is_checkpointed_once_settled_and_not_twice() -> None:
    positions = Positions()
    assert positions.after_read() is None  # nothing settled yet
    positions.settled("100")
    assert positions.after_read() == "100"
    positions.written("100")
    assert positions.after_read() is None
    assert positions.on_stop() == "100"  # the final position is written again on a stop
    assert positions.may_end_shard()


def test_a_batch_given_up_to_a_stop_blocks_every_later_checkpoint_but_the_stop_one() -> None:
    positions = Positions()
    positions.settled("100")
    positions.written("100")
    positions.give_up(stopping=True)
    assert positions.after_read() is None
    assert not positions.accepts_records()
    assert not positions.may_end_shard()  # SHARD_END would pass the records given up
    assert positions.on_stop() == "100"  # before the batch given up


def test_nothing_is_checkpointed_after_the_lease_is_lost() -> None:
    positions = Positions()
    positions.settled("100")
    positions.lease_lost = True
    assert positions.after_read() is None
    assert positions.on_stop() is None
    assert not positions.may_end_shard()
    assert not positions.accepts_records()
    assert positions.given_up  # the records handed over are the new owner's


def test_a_shard_with_every_record_settled_may_end() -> None:
    positions = Positions()
    assert positions.accepts_records()
    positions.settled("100")
    assert positions.may_end_shard()
