"""`source.maximum_batching_window_seconds`: records gathered across reads, driven through kclpy's protocol loop."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from test_processor_protocol import (
    INITIALIZE,
    RecordingSink,
    _actions,
    _checkpoint_reply,
    _process,
    _run,
    _stream_record,
)

from consumer.batching import MAX_HELD_BYTES, BatchingWindow
from consumer.checkpoint import Positions
from consumer.errors import TransientDeliveryError
from consumer.sinks.base import Failure, Message


class BatchRecorder(RecordingSink):
    def __init__(self, errors: Sequence[Exception] = ()) -> None:
        super().__init__(errors)
        self.batches: list[list[str]] = []

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        failures = super().send(batch)
        self.batches.append([m.event.sequence_number for m in batch])
        return failures


def _read(*sequences: int) -> dict[str, object]:
    return _process(*(_stream_record(str(n), f"prod-{n}") for n in sequences))


EMPTY = _process()


def test_records_are_gathered_across_reads_until_the_window_closes() -> None:
    sink = BatchRecorder()
    output = _run(
        sink,
        INITIALIZE,
        _read(100),  # t=0: the window opens
        _read(101),  # t=1
        EMPTY,  # t=2
        EMPTY,  # t=5: closed, delivered
        _checkpoint_reply("101"),
        window=5,
        clock=[0, 1, 2, 5],
    )
    assert sink.batches == [["100", "101"]]
    assert _actions(output) == [
        "status:initialize",
        *["status:processRecords"] * 3,
        "checkpoint",
        "status:processRecords",
    ]
    assert output[-2]["sequenceNumber"] == "101"


def test_a_full_batch_goes_at_once_and_the_rest_waits_for_its_own_window() -> None:
    sink = BatchRecorder()
    output = _run(
        sink,
        INITIALIZE,
        _read(100, 101),  # t=0
        _read(102, 103, 104),  # t=1: 5 held, a batch of 3 goes, 2 held from t=1
        _checkpoint_reply("102"),
        EMPTY,  # t=5: the rest's window opened at 1, still open
        EMPTY,  # t=6: closed
        _checkpoint_reply("104"),
        batch_size=3,
        window=5,
        clock=[0, 1, 5, 6],
    )
    assert sink.batches == [["100", "101", "102"], ["103", "104"]]
    assert [m["sequenceNumber"] for m in output if m["action"] == "checkpoint"] == ["102", "104"]


def test_without_a_window_each_read_is_delivered_as_it_comes() -> None:
    sink = BatchRecorder()
    _run(
        sink,
        INITIALIZE,
        _read(100),
        _checkpoint_reply("100"),
        _read(101),
        _checkpoint_reply("101"),
        clock=[0, 0],
    )
    assert sink.batches == [["100"], ["101"]]


def test_a_stop_delivers_the_held_records_before_the_final_checkpoint() -> None:
    sink = BatchRecorder()
    output = _run(
        sink,
        INITIALIZE,
        _read(100),
        {"action": "shutdownRequested"},
        _checkpoint_reply("100"),
        window=300,
        clock=[0],
    )
    assert sink.batches == [["100"]]
    assert _actions(output) == ["status:initialize", "status:processRecords", "checkpoint", "status:shutdownRequested"]
    assert output[2]["sequenceNumber"] == "100"


def test_the_final_checkpoint_stays_before_records_given_up_from_the_window() -> None:
    class FailsOnce(BatchRecorder):
        def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
            if [m.event.sequence_number for m in batch] == ["102"]:
                raise TransientDeliveryError("down")
            return super().send(batch)

    sink = FailsOnce()
    output = _run(
        sink,
        INITIALIZE,
        _read(100, 101),
        _checkpoint_reply("101"),
        _read(102),
        {"action": "shutdownRequested"},
        _checkpoint_reply("101"),
        batch_size=2,
        window=300,
        clock=[0, 1],
        stopping=True,
    )
    assert sink.batches == [["100", "101"]]
    assert [m["sequenceNumber"] for m in output if m["action"] == "checkpoint"] == ["101", "101"]


def test_lease_lost_drops_the_held_records_and_checkpoints_nothing() -> None:
    sink = BatchRecorder()
    output = _run(
        sink,
        INITIALIZE,
        _read(100),
        {"action": "leaseLost"},
        EMPTY,
        {"action": "shardEnded"},
        window=1,
        clock=[0, 10],
    )
    assert sink.batches == []
    assert "checkpoint" not in _actions(output)


def test_shard_end_flushes_the_window_then_ends_the_shard() -> None:
    sink = BatchRecorder()
    output = _run(
        sink,
        INITIALIZE,
        _read(100),
        {"action": "shardEnded"},
        _checkpoint_reply(None),
        window=300,
        clock=[0],
    )
    assert sink.batches == [["100"]]
    assert _actions(output) == ["status:initialize", "status:processRecords", "checkpoint", "status:shardEnded"]
    assert output[2]["sequenceNumber"] is None  # SHARD_END


def test_shard_end_is_not_written_when_the_flush_is_given_up() -> None:
    sink = BatchRecorder(errors=[TransientDeliveryError("down")])
    output = _run(sink, INITIALIZE, _read(100), {"action": "shardEnded"}, window=300, clock=[0], stopping=True)
    assert sink.batches == []
    assert "checkpoint" not in _actions(output)


class _Record:
    def __init__(self, sequence: int, size: int = 4) -> None:
        self.sequence_number = str(sequence)
        self.data = "A" * size


@pytest.mark.parametrize(("held", "expected"), [(2, 0), (3, 3), (7, 6)])
def test_only_whole_batches_leave_an_open_window(held: int, expected: int) -> None:
    window = BatchingWindow(batch_size=3, window_seconds=10)
    window.add([_Record(n) for n in range(held)], 0)
    assert len(window.due(1)) == expected
    assert len(window.held) == held - expected


def test_six_megabytes_held_close_the_window() -> None:
    window = BatchingWindow(batch_size=10_000, window_seconds=300)
    window.add([_Record(1, size=MAX_HELD_BYTES * 4 // 3 - 4)], 0)
    assert window.due(1) == []
    window.add([_Record(2)], 1)
    assert [r.sequence_number for r in window.due(2)] == ["1", "2"]


def test_positions_refuse_shard_end_while_records_are_held() -> None:
    positions = Positions()
    positions.holding = True
    assert not positions.may_end_shard()
    positions.holding = False
    assert positions.may_end_shard()
