"""The record processor driven through kclpy's real protocol loop, with the daemon's messages in memory."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from typing import Any

import pytest
from amazon_kclpy import kcl
from samples import STREAM_ARN

from consumer.delivery import Pipeline, RetryPolicy
from consumer.environment import EXIT_FAILED, EXIT_UNDELIVERED
from consumer.errors import PermanentDeliveryError, TransientDeliveryError
from consumer.events import ChangeEvent, StreamContext
from consumer.processor import RecordProcessor
from consumer.router import Router
from consumer.sinks.base import Failure, Message

CONTEXT = StreamContext(stream_arn=STREAM_ARN, region="us-east-1")


class RecordingSink:
    name = "recording"

    def __init__(self, errors: Sequence[Exception] = ()) -> None:
        self.events: list[ChangeEvent] = []
        self._errors = list(errors)

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        if self._errors:
            raise self._errors.pop(0)
        self.events.extend(m.event for m in batch)
        return ()

    def close(self) -> None:
        return None


def _stream_record(sequence: str, product: str, event_name: str = "INSERT") -> dict[str, Any]:
    payload = {
        "eventID": f"id-{sequence}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1732800000000,
            "Keys": {"productId": {"S": product}},
            "NewImage": {"productId": {"S": product}, "price": {"N": "25.99"}},
            "SequenceNumber": sequence,
            "SizeBytes": 40,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    return _kcl_record(sequence, json.dumps(payload).encode())


def _kcl_record(sequence: str, data: bytes) -> dict[str, Any]:
    return {
        "action": "record",
        "data": base64.b64encode(data).decode(),
        "partitionKey": sequence,
        "sequenceNumber": sequence,
        "subSequenceNumber": 0,
        "approximateArrivalTimestamp": 1732800000000,
    }


INITIALIZE = {"action": "initialize", "shardId": "shardId-1", "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0}


def _process(*records: dict[str, Any]) -> dict[str, Any]:
    return {"action": "processRecords", "records": list(records), "millisBehindLatest": 0}


def _checkpoint_reply(sequence: str | None, error: str | None = None) -> dict[str, Any]:
    return {"action": "checkpoint", "sequenceNumber": sequence, "subSequenceNumber": None, "error": error}


def _run(
    sink: Any,
    *messages: dict[str, Any],
    batch_size: int = 100,
    stopping: bool = False,
    window: float = 0.0,
    clock: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """Feed messages to kclpy's loop; return what the child wrote back."""
    stdin = io.StringIO("".join(json.dumps(m) + "\n" for m in messages))
    stdout = io.StringIO()
    kclpy_errors = io.StringIO()
    pipeline = Pipeline(
        Router.to_all([sink.name], CONTEXT),
        [sink],
        retry=RetryPolicy(max_attempts=2, base_delay_seconds=0),
        sleep=lambda _: None,
        stopping=lambda: stopping,
    )
    moments = iter(clock) if clock is not None else None
    processor = RecordProcessor(
        pipeline,
        CONTEXT,
        sleep=lambda _: None,
        batch_size=batch_size,
        batching_window_seconds=window,
        clock=(lambda: 0.0) if moments is None else (lambda: next(moments)),  # a moment per process_records call
    )
    try:
        kcl.KCLProcess(processor, input_file=stdin, output_file=stdout, error_file=kclpy_errors).run()
    finally:
        # kclpy prints here when it swallowed an exception and acknowledged the batch anyway: never acceptable.
        assert "Caught exception from action dispatch" not in kclpy_errors.getvalue()
    return [json.loads(line) for line in stdout.getvalue().splitlines() if line.strip()]


def _actions(output: list[dict[str, Any]]) -> list[str]:
    return [m["action"] if m["action"] != "status" else f"status:{m['responseFor']}" for m in output]


def test_batch_is_delivered_then_checkpointed_at_its_last_sequence_number() -> None:
    sink = RecordingSink()
    long_sequence = "4" * 40  # passed back as the exact string, never through int
    output = _run(
        sink,
        INITIALIZE,
        _process(_stream_record("100", "prod-1"), _stream_record(long_sequence, "prod-2")),
        _checkpoint_reply(long_sequence),
    )
    assert [e.keys["productId"] for e in sink.events] == ["prod-1", "prod-2"]
    assert _actions(output) == ["status:initialize", "checkpoint", "status:processRecords"]
    assert output[1]["sequenceNumber"] == long_sequence


def test_a_read_is_delivered_in_slices_of_batch_size_then_checkpointed_once() -> None:
    class SliceRecorder(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.slices: list[list[str]] = []

        def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
            self.slices.append([m.event.sequence_number for m in batch])
            return super().send(batch)

    sink = SliceRecorder()
    sequences = [str(100 + n) for n in range(5)]
    output = _run(
        sink,
        INITIALIZE,
        _process(*(_stream_record(sequence, f"prod-{sequence}") for sequence in sequences)),
        _checkpoint_reply(sequences[-1]),
        batch_size=2,
    )
    assert sink.slices == [sequences[0:2], sequences[2:4], sequences[4:]]
    assert _actions(output) == ["status:initialize", "checkpoint", "status:processRecords"]
    assert output[1]["sequenceNumber"] == sequences[-1]


def test_an_undeliverable_slice_stops_the_child_before_any_checkpoint() -> None:
    sink = RecordingSink(errors=[TransientDeliveryError("down")] * 2)
    with pytest.raises(SystemExit) as stopped:
        _run(
            sink,
            INITIALIZE,
            _process(*(_stream_record(str(100 + n), f"prod-{n}") for n in range(4))),
            batch_size=2,
        )
    assert stopped.value.code == EXIT_UNDELIVERED
    assert sink.events == []


def test_lease_lost_never_checkpoints_afterwards() -> None:
    sink = RecordingSink()
    output = _run(
        sink,
        INITIALIZE,
        _process(_stream_record("100", "prod-1")),
        _checkpoint_reply("100"),
        {"action": "leaseLost"},
        # A batch the KCL had already fetched: the new owner delivers it from our checkpoint.
        _process(_stream_record("101", "prod-2")),
        {"action": "shutdownRequested"},
    )
    assert _actions(output) == [
        "status:initialize",
        "checkpoint",
        "status:processRecords",
        "status:leaseLost",
        "status:processRecords",
        "status:shutdownRequested",
    ]
    assert [e.sequence_number for e in sink.events] == ["100"]


def test_shard_ended_checkpoints_the_shard_end() -> None:
    output = _run(RecordingSink(), INITIALIZE, {"action": "shardEnded"}, _checkpoint_reply(None))
    assert _actions(output) == ["status:initialize", "checkpoint", "status:shardEnded"]
    assert output[1]["sequenceNumber"] is None


def test_shard_end_after_a_batch_given_up_to_a_stop_writes_no_checkpoint() -> None:
    # The closed shard's last batch is being retried when the stop comes: SHARD_END would skip it for good.
    sink = RecordingSink([TransientDeliveryError("503")] * 5)
    output = _run(
        sink,
        INITIALIZE,
        _process(_stream_record("100", "prod-1")),
        {"action": "shardEnded"},
        stopping=True,
    )
    assert _actions(output) == ["status:initialize", "status:processRecords", "status:shardEnded"]
    assert sink.events == []


def test_shard_end_after_records_left_to_a_new_owner_writes_no_checkpoint() -> None:
    output = _run(
        RecordingSink(),
        INITIALIZE,
        {"action": "leaseLost"},
        _process(_stream_record("101", "prod-2")),
        {"action": "shardEnded"},
    )
    assert _actions(output) == [
        "status:initialize",
        "status:leaseLost",
        "status:processRecords",
        "status:shardEnded",
    ]


def test_shutdown_requested_checkpoints_the_last_settled_record() -> None:
    output = _run(
        RecordingSink(),
        INITIALIZE,
        _process(_stream_record("100", "prod-1")),
        _checkpoint_reply("100"),
        {"action": "shutdownRequested"},
        _checkpoint_reply("100"),
    )
    assert _actions(output) == [
        "status:initialize",
        "checkpoint",
        "status:processRecords",
        "checkpoint",
        "status:shutdownRequested",
    ]
    assert output[3]["sequenceNumber"] == "100"


def test_throttled_checkpoint_is_retried() -> None:
    output = _run(
        RecordingSink(),
        INITIALIZE,
        _process(_stream_record("100", "prod-1")),
        _checkpoint_reply("100", error="ThrottlingException"),
        _checkpoint_reply("100"),
    )
    assert _actions(output) == ["status:initialize", "checkpoint", "checkpoint", "status:processRecords"]


def test_checkpoint_refused_for_a_lost_lease_stops_checkpointing() -> None:
    output = _run(
        RecordingSink(),
        INITIALIZE,
        _process(_stream_record("100", "prod-1")),
        _checkpoint_reply("100", error="ShutdownException"),
        {"action": "shutdownRequested"},
    )
    assert _actions(output) == ["status:initialize", "checkpoint", "status:processRecords", "status:shutdownRequested"]


def test_transient_sink_error_is_retried_before_the_checkpoint() -> None:
    sink = RecordingSink(errors=[TransientDeliveryError("503")])
    output = _run(sink, INITIALIZE, _process(_stream_record("100", "prod-1")), _checkpoint_reply("100"))
    assert len(sink.events) == 1
    assert _actions(output) == ["status:initialize", "checkpoint", "status:processRecords"]


def test_undeliverable_batch_exits_without_checkpoint() -> None:
    sink = RecordingSink(errors=[PermanentDeliveryError("400 bad request")])
    with pytest.raises(SystemExit) as exited:
        _run(sink, INITIALIZE, _process(_stream_record("100", "prod-1")))
    assert exited.value.code == EXIT_UNDELIVERED
    assert sink.events == []


def test_undecodable_record_is_logged_whole_and_the_rest_delivered(capsys: pytest.CaptureFixture[str]) -> None:
    sink = RecordingSink()
    bad = _kcl_record("101", b"\x00 not json")
    output = _run(
        sink,
        INITIALIZE,
        _process(_stream_record("100", "prod-1"), bad, _stream_record("102", "prod-3")),
        _checkpoint_reply("102"),
    )
    assert [e.sequence_number for e in sink.events] == ["100", "102"]
    assert output[1]["sequenceNumber"] == "102"
    assert base64.b64encode(b"\x00 not json").decode() in capsys.readouterr().err


def test_shutdown_requested_before_any_record_writes_no_checkpoint() -> None:
    output = _run(RecordingSink(), INITIALIZE, {"action": "shutdownRequested"})
    assert _actions(output) == ["status:initialize", "status:shutdownRequested"]


def test_failed_shard_end_checkpoint_exits_instead_of_stalling_the_children() -> None:
    with pytest.raises(SystemExit) as exited:
        _run(RecordingSink(), INITIALIZE, {"action": "shardEnded"}, _checkpoint_reply(None, error="ShutdownException"))
    assert exited.value.code == EXIT_FAILED


def test_invalid_state_on_checkpoint_is_not_retried_but_exits() -> None:
    with pytest.raises(SystemExit) as exited:
        _run(
            RecordingSink(),
            INITIALIZE,
            _process(_stream_record("100", "prod-1")),
            _checkpoint_reply("100", error="InvalidStateException"),
        )
    assert exited.value.code == EXIT_FAILED


class BrokenSink(RecordingSink):
    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        del batch
        raise RuntimeError("a bug in a sink")


def test_untyped_sink_error_never_lets_the_batch_pass() -> None:
    with pytest.raises(SystemExit) as exited:
        _run(BrokenSink(), INITIALIZE, _process(_stream_record("100", "prod-1")))
    assert exited.value.code == EXIT_UNDELIVERED


def test_partial_failure_redelivers_only_the_failed_events() -> None:
    class FlakySink(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
            self.calls += 1
            if self.calls == 1:
                self.events.append(batch[0].event)
                return [Failure(message, TransientDeliveryError("throttled")) for message in batch[1:]]
            self.events.extend(m.event for m in batch)
            return ()

    sink = FlakySink()
    _run(sink, INITIALIZE, _process(_stream_record("100", "p1"), _stream_record("101", "p2")), _checkpoint_reply("101"))
    assert [e.sequence_number for e in sink.events] == ["100", "101"]


def test_undecodable_record_goes_to_the_on_failure_destination_when_there_is_one() -> None:
    letters: list[Any] = []
    stdin = io.StringIO(
        "".join(
            json.dumps(m) + "\n"
            for m in (
                INITIALIZE,
                _process(_stream_record("100", "prod-1"), _kcl_record("101", b"\x00 not json")),
                _checkpoint_reply("101"),
            )
        )
    )
    stdout = io.StringIO()
    sink = RecordingSink()
    pipeline = Pipeline(Router.to_all([sink.name], CONTEXT), [sink], sleep=lambda _: None)
    processor = RecordProcessor(pipeline, CONTEXT, sleep=lambda _: None, dead_letters=letters.extend)
    kcl.KCLProcess(processor, input_file=stdin, output_file=stdout, error_file=io.StringIO()).run()
    assert [(x.sequence_number, x.raw_data, type(x.error).__name__) for x in letters] == [
        ("101", b"\x00 not json", "DecodeError")
    ]
    assert [e.sequence_number for e in sink.events] == ["100"]
