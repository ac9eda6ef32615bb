from __future__ import annotations

import io
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog
from samples import STREAM_ARN

from consumer.config import FileSinkConfig, LogSinkConfig, MemorySinkConfig
from consumer.decode import decode_record
from consumer.delivery import Pipeline, RetryPolicy
from consumer.errors import PermanentDeliveryError, TransientDeliveryError, UndeliveredError
from consumer.events import ChangeEvent, StreamContext
from consumer.formats import JSON, plain
from consumer.jsontext import dumps
from consumer.router import Router
from consumer.sinks import Failure, Message, build_sink, registered_types
from consumer.sinks.memory import MemorySink

CONTEXT = StreamContext(stream_arn=STREAM_ARN, region="us-east-1")


def _event(sequence: str, **new: Any) -> ChangeEvent:
    record = {
        "eventID": f"id-{sequence}",
        "eventName": "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": 1732800000000,
            "Keys": {"productId": {"S": "prod-1"}},
            "NewImage": {"productId": {"S": "prod-1"}, **new},
            "SequenceNumber": sequence,
            "SizeBytes": 10,
        },
    }
    return decode_record(json.dumps(record).encode(), CONTEXT)


def _message(sequence: str, **new: Any) -> Message:
    event = _event(sequence, **new)
    return Message(event, "route", dumps(plain(event)), JSON)


def test_builtin_sinks_are_registered_by_type() -> None:
    assert {"log", "file", "memory"} <= set(registered_types())
    sink = build_sink(MemorySinkConfig(type="memory"), CONTEXT)
    assert sink.send([_message("1")]) == ()


def test_memory_sink_keeps_the_newest_messages_it_is_told_to_and_counts_all() -> None:
    sink = build_sink(MemorySinkConfig(type="memory", keep=2), CONTEXT)
    sink.send([_message("1"), _message("2")])
    sink.send([_message("3")])
    assert isinstance(sink, MemorySink)
    assert [m.event.sequence_number for m in sink.messages] == ["2", "3"]
    assert sink.received == 3


def test_file_sink_appends_exact_plain_lines(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = build_sink(FileSinkConfig(type="file", path=path), CONTEXT)
    sink.send([_message("1", price={"N": "0.1000000000000000000000000000000000001"}, name={"S": "Müsli ☕"})])
    sink.send([_message("2")])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0], parse_float=Decimal)
    assert first["new"]["price"] == Decimal("0.1000000000000000000000000000000000001")
    assert first["new"]["name"] == "Müsli ☕"
    assert first["approximateCreationDateTime"] == "2024-11-28T13:20:00.000Z"
    assert first["old"] is None


def test_file_sink_in_a_missing_directory_is_a_permanent_error(tmp_path: Path) -> None:
    sink = build_sink(FileSinkConfig(type="file", path=tmp_path / "absent" / "out.jsonl"), CONTEXT)
    with pytest.raises(PermanentDeliveryError, match="cannot open"):
        sink.send([_message("1")])


def test_log_sink_nests_selected_attributes_so_they_cannot_clash(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    structlog.reset_defaults()
    from consumer.logs import configure_logging  # noqa: PLC0415

    configure_logging("INFO", json_output=True)
    sink = build_sink(LogSinkConfig(type="log", fields=("event", "level", "price")), CONTEXT)
    sink.send([_message("7", event={"S": "launch"}, level={"N": "3"}, price={"N": "25.99"})])
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["event"] == "change"
    assert line["level"] == "info"
    assert line["item"] == {"event": "launch", "level": 3, "price": 25.99}
    assert line["keys"] == {"productId": "prod-1"}
    assert line["sequence_number"] == "7"


class ScriptedSink:
    name = "scripted"

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.batches: list[list[str]] = []

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        self.batches.append([m.event.sequence_number for m in batch])
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        if step is None:
            return ()
        failing = set(step)
        return [Failure(m, TransientDeliveryError("throttled")) for m in batch if m.event.sequence_number in failing]

    def close(self) -> None:
        return None


def _pipeline(sink: ScriptedSink, attempts: int = 4) -> Pipeline:
    return Pipeline(
        Router.to_all([sink.name], CONTEXT),
        [sink],
        retry=RetryPolicy(max_attempts=attempts, base_delay_seconds=0),
        sleep=lambda _: None,
    )


def test_only_failed_entries_are_sent_again() -> None:
    sink = ScriptedSink([["2", "3"], None])
    _pipeline(sink).deliver([_event("1"), _event("2"), _event("3")])
    assert sink.batches == [["1", "2", "3"], ["2", "3"]]


def test_permanent_error_is_not_retried() -> None:
    sink = ScriptedSink([PermanentDeliveryError("400")])
    with pytest.raises(UndeliveredError) as caught:
        _pipeline(sink).deliver([_event("1")])
    assert sink.batches == [["1"]]
    assert isinstance(caught.value.cause, PermanentDeliveryError)


def test_transient_errors_give_up_after_the_allowed_attempts() -> None:
    sink = ScriptedSink([TransientDeliveryError("503")] * 3)
    with pytest.raises(UndeliveredError) as caught:
        _pipeline(sink, attempts=3).deliver([_event("1")])
    assert len(sink.batches) == 3
    assert caught.value.sequence_numbers == ("1",)


def test_backoff_is_capped_full_jitter() -> None:
    policy = RetryPolicy(base_delay_seconds=1, max_delay_seconds=4)
    delays = [policy.delay(attempt) for attempt in range(10) for _ in range(50)]
    assert all(0 <= d <= 4 for d in delays)
    assert max(delays) > 2  # grows past the base


def test_retry_after_is_honoured_within_a_cap() -> None:
    class ThrottledError(TransientDeliveryError):
        retry_after = 7.0

    sink = ScriptedSink([ThrottledError("429"), None])
    slept: list[float] = []
    pipeline = Pipeline(
        Router.to_all([sink.name], CONTEXT),
        [sink],
        retry=RetryPolicy(max_attempts=3, base_delay_seconds=0.01, max_delay_seconds=0.02),
        sleep=slept.append,
    )
    pipeline.deliver([_event("1")])
    assert sum(slept) == pytest.approx(7.0)  # waited in slices, to notice a stop request
