"""Retries, maximum record age, bisect and the on-failure destination."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from samples import STREAM_ARN

from consumer import clients
from consumer.config import DeliveryPolicy, FileDestinationConfig, HandlerSinkConfig
from consumer.deadletter import DeadLetter, FileDestination, entry
from consumer.decode import decode_record
from consumer.delivery import DeadLetterWriter, Pipeline, RetryPolicy
from consumer.errors import (
    DeliveryError,
    FunctionError,
    NotSentError,
    PermanentDeliveryError,
    RetryAfterError,
    TransientDeliveryError,
    UndeliveredError,
)
from consumer.events import StreamContext
from consumer.router import Router
from consumer.sinks.base import Failure, Message
from consumer.sinks.handler import HandlerSink

CONTEXT = StreamContext(stream_arn=STREAM_ARN, region="us-east-1")
CREATED = datetime(2024, 11, 28, 13, 20, tzinfo=UTC)


def _event(sequence: int) -> Any:
    record = {
        "eventID": f"id-{sequence}",
        "eventName": "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": int(CREATED.timestamp() * 1000),
            "Keys": {"productId": {"S": f"p-{sequence}"}},
            "NewImage": {"productId": {"S": f"p-{sequence}"}, "price": {"N": "25.99"}},
            "SequenceNumber": str(sequence),
            "SizeBytes": 10,
        },
    }
    return decode_record(json.dumps(record).encode(), CONTEXT)


class Sink:
    name = "s"

    def __init__(
        self, refuse: Any = None, poison: set[str] | None = None, poison_error: DeliveryError | None = None
    ) -> None:
        self.refuse = refuse  # callable(batch) -> list of failures, or an exception to raise for every call
        self.poison = poison or set()
        # What a batch holding a poison record is refused with as a whole (a handler raising on it, by default).
        self.poison_error = poison_error or FunctionError("handler raised ValueError: the batch holds a poison record")
        self.accepted: list[str] = []
        self.calls: list[list[str]] = []

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        sequences = [m.event.sequence_number for m in batch]
        self.calls.append(sequences)
        if self.poison & set(sequences):
            raise self.poison_error
        if isinstance(self.refuse, Exception):
            raise self.refuse
        failures = self.refuse(batch) if self.refuse else []
        failed = {id(f.message) for f in failures}
        self.accepted += [m.event.sequence_number for m in batch if id(m) not in failed]
        return failures

    def close(self) -> None:
        return None


def _run(
    sink: Sink, events: list[Any], policy: RetryPolicy, clock: datetime = CREATED
) -> tuple[list[DeadLetter], list[float]]:
    letters: list[DeadLetter] = []
    slept: list[float] = []
    pipeline = Pipeline(
        Router.to_all([sink.name], CONTEXT),
        [sink],  # type: ignore[list-item]
        {sink.name: policy},
        dead_letters=letters.extend,
        sleep=slept.append,
        clock=lambda: clock,
    )
    pipeline.deliver(events)
    return letters, slept


def test_policy_from_config_follows_lambda_semantics() -> None:
    policy = RetryPolicy.from_config(DeliveryPolicy(max_retry_attempts=2, max_record_age_seconds=60))
    assert policy.max_attempts == 3  # the first attempt plus two retries
    assert policy.max_record_age == timedelta(seconds=60)
    unlimited = RetryPolicy.from_config(DeliveryPolicy(max_retry_attempts=-1))
    assert not unlimited.exhausted(10_000)


def test_permanent_error_goes_to_the_destination_without_retries() -> None:
    sink = Sink(refuse=lambda batch: [Failure(batch[1], PermanentDeliveryError("400 bad request"))])
    letters, slept = _run(sink, [_event(1), _event(2), _event(3)], RetryPolicy(max_attempts=5))
    assert sink.accepted == ["1", "3"]
    assert [(x.sequence_number, x.attempts, type(x.error).__name__) for x in letters] == [
        ("2", 1, "PermanentDeliveryError")
    ]
    assert slept == []


def test_transient_errors_are_retried_then_dead_lettered() -> None:
    sink = Sink(refuse=TransientDeliveryError("503"))
    letters, slept = _run(sink, [_event(1)], RetryPolicy(max_attempts=3, base_delay_seconds=0.01))
    assert len(sink.calls) == 3
    assert len(slept) >= 2
    assert [(x.sequence_number, x.attempts) for x in letters] == [("1", 3)]


def _stop_at(fails: Callable[[str], DeliveryError | None]) -> Callable[[Sequence[Message]], list[Failure]]:
    """A sink that sends in order and stops at the first failure, holding the rest back (the webhook, SQS chunks)."""

    def refuse(batch: Sequence[Message]) -> list[Failure]:
        for index, message in enumerate(batch):
            error = fails(message.event.sequence_number)
            if error is not None:
                held = [
                    Failure(rest, NotSentError("not sent: an earlier message failed")) for rest in batch[index + 1 :]
                ]
                return [Failure(message, error), *held]
        return []

    return refuse


def test_records_held_back_behind_refused_ones_keep_their_retries() -> None:
    # Ten refusals in a batch of thirty, three attempts: each refusal used to cost every later record an attempt,
    # so the records after the third refusal went to the destination without ever being sent.
    refused = {str(i) for i in range(3, 31, 3)}
    sink = Sink(refuse=_stop_at(lambda seq: PermanentDeliveryError("HTTP 400") if seq in refused else None))
    letters, slept = _run(sink, [_event(i) for i in range(1, 31)], RetryPolicy(max_attempts=3))
    assert sink.accepted == [str(i) for i in range(1, 31) if str(i) not in refused]
    assert [(x.sequence_number, x.attempts, type(x.error).__name__) for x in letters] == [
        (seq, 1, "PermanentDeliveryError") for seq in sorted(refused, key=int)
    ]
    assert slept == []  # what blocked them is settled: nothing to wait for


def test_records_held_back_behind_one_that_runs_out_of_retries_are_still_delivered() -> None:
    sink = Sink(refuse=_stop_at(lambda seq: TransientDeliveryError("HTTP 503") if seq == "5" else None))
    letters, slept = _run(sink, [_event(i) for i in range(1, 11)], RetryPolicy(max_attempts=3, base_delay_seconds=0.01))
    assert [(x.sequence_number, x.attempts, type(x.error).__name__) for x in letters] == [
        ("5", 3, "TransientDeliveryError")
    ]
    assert sink.accepted == [str(i) for i in range(1, 11) if i != 5]
    assert slept  # the retries of record 5 waited their backoff


def test_records_older_than_the_maximum_age_are_not_sent() -> None:
    sink = Sink()
    later = CREATED + timedelta(hours=2)
    letters, _ = _run(sink, [_event(1)], RetryPolicy(max_record_age=timedelta(hours=1)), clock=later)
    assert sink.calls == []
    assert [(x.sequence_number, type(x.error).__name__, x.attempts) for x in letters] == [("1", "RecordTooOldError", 0)]


def test_bisect_isolates_the_poison_record() -> None:
    sink = Sink(poison={"3"})
    events = [_event(i) for i in range(1, 7)]
    letters, _ = _run(sink, events, RetryPolicy(max_attempts=2, base_delay_seconds=0.001, bisect=True))
    assert sink.accepted == ["1", "2", "4", "5", "6"]  # in order: each half settled before the next
    assert [x.sequence_number for x in letters] == ["3"]


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


# Whole-call errors as the sinks classify them during an outage: none of them says anything about the records.
OUTAGE_ERRORS = {
    "aws 503": clients.delivery_error(_client_error("ServiceUnavailable", 503), "SendMessageBatch"),
    "aws throttling": clients.delivery_error(_client_error("ThrottlingException", 400), "PutEvents"),
    "aws read timeout": clients.delivery_error(ReadTimeoutError(endpoint_url="http://x"), "Publish"),
    "aws connection refused": clients.delivery_error(EndpointConnectionError(endpoint_url="http://x"), "Publish"),
    "http 503": RetryAfterError("https://hooks.example answered HTTP 503", 503, None),
}


@pytest.mark.parametrize("outages", [1, 3])
@pytest.mark.parametrize("error", OUTAGE_ERRORS.values(), ids=OUTAGE_ERRORS.keys())
def test_bisect_retries_the_whole_batch_through_an_outage(error: DeliveryError, outages: int) -> None:
    assert not isinstance(error, PermanentDeliveryError | FunctionError)
    answers = iter([error] * outages)

    def refuse(batch: Sequence[Message]) -> list[Failure]:
        failure = next(answers, None)
        if failure is not None:
            raise failure
        return []

    sink = Sink(refuse=refuse)
    events = [_event(i) for i in range(1, 101)]
    letters, slept = _run(sink, events, RetryPolicy(max_attempts=8, base_delay_seconds=0.001, bisect=True))
    everything = [str(i) for i in range(1, 101)]
    assert sink.calls == [everything] * (outages + 1)  # N refusals, then the one call that succeeds: never split
    assert len(slept) >= outages  # each retry waited its backoff (in slices of at most 0.2 s)
    assert sink.accepted == everything
    assert letters == []


RECORD_ERRORS = {
    "http 400": PermanentDeliveryError("https://hooks.example answered HTTP 400"),
    "aws validation": clients.delivery_error(_client_error("InvalidParameterValue", 400), "SendMessageBatch"),
    "handler raised": FunctionError("handler raised ValueError: cannot handle this record"),
    "handler timed out": FunctionError("handler timed out after 3 s"),
}


@pytest.mark.parametrize("error", RECORD_ERRORS.values(), ids=RECORD_ERRORS.keys())
def test_bisect_splits_down_to_the_poison_record_on_errors_a_record_can_cause(error: DeliveryError) -> None:
    sink = Sink(poison={"37"}, poison_error=error)
    events = [_event(i) for i in range(1, 101)]
    letters, _ = _run(sink, events, RetryPolicy(max_attempts=3, base_delay_seconds=0.001, bisect=True))
    assert [x.sequence_number for x in letters] == ["37"]
    assert letters[0].error is error
    assert sink.accepted == [str(i) for i in range(1, 101) if i != 37]  # in stream order
    # Halving: the half holding the poison splits again, the other half goes through in one call.
    retries = 0 if isinstance(error, PermanentDeliveryError) else 2
    assert [len(call) for call in sink.calls if "37" in call] == [100, 50, 25, 12, 6, 3, 2, 1] + [1] * retries
    assert len(sink.calls) == 8 + 7 + retries


def test_bisect_isolates_a_record_the_real_handler_raises_on(tmp_path: Path) -> None:
    handled = tmp_path / "handled.txt"
    (tmp_path / "fragile.py").write_text(
        "def handler(event, context):\n"
        "    sequences = [r['dynamodb']['SequenceNumber'] for r in event['Records']]\n"
        "    if '5' in sequences:\n"
        "        raise ValueError('cannot handle record 5')\n"
        f"    with open({str(handled)!r}, 'a') as out:\n"
        "        out.writelines(s + '\\n' for s in sequences)\n"
    )
    config = HandlerSinkConfig(type="handler", name="s", handler=f"{tmp_path / 'fragile.py'}:handler")
    sink = HandlerSink(config, CONTEXT)
    letters: list[DeadLetter] = []
    pipeline = Pipeline(
        Router.to_all([sink.name], CONTEXT),
        [sink],
        {sink.name: RetryPolicy(max_attempts=2, base_delay_seconds=0.001, bisect=True)},
        dead_letters=letters.extend,
        sleep=lambda _: None,
    )
    try:
        pipeline.deliver([_event(i) for i in range(1, 9)])
    finally:
        sink.close()
    assert handled.read_text().split() == ["1", "2", "3", "4", "6", "7", "8"]
    assert [(x.sequence_number, type(x.error).__name__, x.attempts) for x in letters] == [("5", "FunctionError", 2)]
    assert "ValueError: cannot handle record 5" in str(letters[0].error)


def test_without_bisect_the_whole_batch_is_dead_lettered() -> None:
    sink = Sink(poison={"3"})
    letters, _ = _run(sink, [_event(i) for i in range(1, 5)], RetryPolicy(max_attempts=2, base_delay_seconds=0.001))
    assert [x.sequence_number for x in letters] == ["1", "2", "3", "4"]


def test_without_a_destination_undeliverable_records_stop_the_batch() -> None:
    sink = Sink(refuse=PermanentDeliveryError("410 gone"))
    pipeline = Pipeline(Router.to_all(["s"], CONTEXT), [sink], RetryPolicy(max_attempts=2), sleep=lambda _: None)  # type: ignore[list-item]
    with pytest.raises(UndeliveredError) as caught:
        pipeline.deliver([_event(1)])
    assert caught.value.sequence_numbers == ("1",)


def test_dead_letter_entry_carries_the_full_record(tmp_path: Path) -> None:
    path = tmp_path / "dead-letters.jsonl"
    letter = DeadLetter(
        "route-a", "webhook", PermanentDeliveryError("HTTP 400: bad"), 1, CREATED, CREATED, "7", _event(7)
    )
    writer = DeadLetterWriter(
        FileDestination(FileDestinationConfig(type="file", path=path)), lambda x: entry(x, "app", CONTEXT)
    )
    writer([letter])
    (document,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert document["route"] == "route-a"
    assert document["sink"] == "webhook"
    assert document["error"] == {"class": "PermanentDeliveryError", "message": "HTTP 400: bad"}
    assert document["attempts"] == 1
    assert document["firstAttemptTime"] == "2024-11-28T13:20:00.000Z"
    assert document["record"]["eventSourceARN"] == STREAM_ARN
    assert document["record"]["dynamodb"]["NewImage"]["price"] == {"N": "25.99"}


def test_a_destination_that_cannot_store_stops_the_batch(tmp_path: Path) -> None:
    destination = FileDestination(FileDestinationConfig(type="file", path=tmp_path / "missing" / "dlq.jsonl"))
    writer = DeadLetterWriter(destination, lambda x: entry(x, "app", CONTEXT), sleep=lambda _: None)
    letter = DeadLetter("r", "s", PermanentDeliveryError("x"), 1, CREATED, CREATED, "1", _event(1))
    with pytest.raises(UndeliveredError, match="dead letters"):
        writer([letter])


def test_a_stop_request_abandons_the_retries_without_settling() -> None:
    from consumer.errors import StopRequestedError  # noqa: PLC0415

    sink = Sink(refuse=TransientDeliveryError("503"))
    stop = {"now": False}

    def sleep(_: float) -> None:
        stop["now"] = True  # the SIGTERM arrives while the pipeline waits to retry

    letters: list[DeadLetter] = []
    pipeline = Pipeline(
        Router.to_all(["s"], CONTEXT),
        [sink],
        RetryPolicy(max_attempts=0),
        dead_letters=letters.extend,  # type: ignore[list-item]
        sleep=sleep,
        stopping=lambda: stop["now"],
    )
    with pytest.raises(StopRequestedError):
        pipeline.deliver([_event(1)])
    assert letters == []  # not dead-lettered either: read again after the restart


def _keyed_event(sequence: int, product: str) -> Any:
    record = {
        "eventID": f"id-{sequence}",
        "eventName": "MODIFY",
        "dynamodb": {
            "ApproximateCreationDateTime": int(CREATED.timestamp() * 1000),
            "Keys": {"productId": {"S": product}},
            "NewImage": {"productId": {"S": product}, "version": {"N": str(sequence)}},
            "SequenceNumber": str(sequence),
            "SizeBytes": 10,
        },
    }
    return decode_record(json.dumps(record).encode(), CONTEXT)


class BarrierSink:
    """Each call waits for another call to arrive at the same time: it only succeeds when lanes run concurrently."""

    name = "s"

    def __init__(self) -> None:
        import threading  # noqa: PLC0415

        self.barrier = threading.Barrier(2, timeout=5)
        self.lock = threading.Lock()
        self.accepted: list[tuple[str, str]] = []

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        self.barrier.wait()
        with self.lock:
            self.accepted += [(m.event.keys["productId"], m.event.sequence_number) for m in batch]
        return ()

    def close(self) -> None:
        return None


def test_parallel_lanes_deliver_different_items_concurrently_and_each_item_in_order() -> None:
    # Two products whose keys land in different lanes of two.
    import zlib  # noqa: PLC0415

    from consumer.jsontext import item_key  # noqa: PLC0415

    products = [f"prod-{i}" for i in range(20)]
    lane_of = {p: zlib.crc32(item_key({"productId": p}).encode()) % 2 for p in products}
    first = next(p for p in products if lane_of[p] == 0)
    second = next(p for p in products if lane_of[p] == 1)
    events = [_keyed_event(i, first if i % 2 else second) for i in range(1, 9)]
    sink = BarrierSink()
    pipeline = Pipeline(Router.to_all(["s"], CONTEXT), [sink], RetryPolicy(lanes=2), sleep=lambda _: None)  # type: ignore[list-item]
    pipeline.deliver(events)
    for product in (first, second):
        sequences = [int(seq) for p, seq in sink.accepted if p == product]
        assert sequences == sorted(sequences)
        assert len(sequences) == 4
