"""The SNS, SQS and EventBridge sinks against the moto server: every message is checked where it arrives."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError, ReadTimeoutError

from consumer import clients
from consumer.config import EventBridgeSinkConfig, SnsSinkConfig, SqsSinkConfig
from consumer.decode import decode_record
from consumer.errors import (
    DeliveryError,
    NotSentError,
    PermanentDeliveryError,
    ThrottledError,
    TransientDeliveryError,
)
from consumer.events import StreamContext
from consumer.formats import plain
from consumer.jsontext import dumps
from consumer.local import LOCAL_REGION, MotoServer, free_port
from consumer.sinks import aws, eventbridge, registry, sns, sqs
from consumer.sinks.base import Failure, Message
from consumer.sinks.eventbridge import EventBridgeSink
from consumer.sinks.sns import SnsSink
from consumer.sinks.sqs import SqsSink

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/2026-11-29T07:28:02.945"
CREATED_MILLIS = 1732800000000
LIMIT = aws.MAX_MESSAGE_BYTES


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- building messages -------------------------------------------------------------------------------------------


@pytest.fixture
def context(moto: MotoServer) -> StreamContext:
    return StreamContext(stream_arn=STREAM_ARN, region=LOCAL_REGION, endpoint_url=moto.url)


def record(sequence: int, product: str, event_name: str = "INSERT", **attributes: str) -> bytes:
    image = {"productId": {"S": product}, "price": {"N": "25.99"}}
    image.update({name: {"S": value} for name, value in attributes.items()})
    payload = {
        "eventID": f"event-{sequence:04d}-{uuid.uuid4().hex[:6]}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": CREATED_MILLIS + sequence,
            "Keys": {"productId": {"S": product}},
            "NewImage": image,
            "SequenceNumber": f"{sequence:021d}",
            "SizeBytes": 40,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    return json.dumps(payload).encode()


def message(
    context: StreamContext,
    sequence: int,
    product: str = "p-1",
    body: str | None = None,
    event_name: str = "INSERT",
    **attributes: str,
) -> Message:
    event = decode_record(record(sequence, product, event_name, **attributes), context)
    return Message(event, "route", dumps(plain(event)) if body is None else body, "application/json")


def messages(context: StreamContext, count: int, products: Sequence[str] = ("p-1", "p-2", "p-3")) -> list[Message]:
    return [message(context, n, products[n % len(products)]) for n in range(count)]


def sequence_of(body: str) -> int:
    return int(json.loads(body)["sequenceNumber"])


# --- AWS resources on the moto server ----------------------------------------------------------------------------


@pytest.fixture
def sqs_client(moto: MotoServer) -> Any:
    return boto3.client("sqs", region_name=LOCAL_REGION, endpoint_url=moto.url)


@pytest.fixture
def sns_client(moto: MotoServer) -> Any:
    return boto3.client("sns", region_name=LOCAL_REGION, endpoint_url=moto.url)


@pytest.fixture
def events_client(moto: MotoServer) -> Any:
    return boto3.client("events", region_name=LOCAL_REGION, endpoint_url=moto.url)


def create_queue(sqs_client: Any, fifo: bool = False) -> tuple[str, str]:
    name = unique("queue") + (".fifo" if fifo else "")
    attributes = {"FifoQueue": "true"} if fifo else {}
    url = sqs_client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def drain(sqs_client: Any, url: str, expected: int, timeout_seconds: float = 10.0) -> list[dict[str, Any]]:
    """Receive (and delete, so a FIFO group unlocks) until `expected` messages arrived; then check for extras."""
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        batch = sqs_client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            AttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        received.extend(batch)
        if batch:
            sqs_client.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
        elif len(received) >= expected:
            break
        else:
            time.sleep(0.1)
    assert len(received) == expected, f"{len(received)} message(s) arrived, {expected} expected"
    return received


def count_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    """The parameters of every `operation` call the sink's real client makes (the calls still go to moto)."""
    calls: list[dict[str, Any]] = []

    def record_call(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    client.meta.events.register(
        f"provide-client-params.{client.meta.service_model.endpoint_prefix}.{operation}", record_call
    )
    return calls


@pytest.fixture
def sinks() -> Iterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for sink in opened:
        sink.close()


def sqs_sink(sinks: list[Any], context: StreamContext, queue_url: str, **options: Any) -> SqsSink:
    sink = SqsSink(SqsSinkConfig(type="sqs", queue_url=queue_url, **options), context)
    sinks.append(sink)
    return sink


def sns_sink(sinks: list[Any], context: StreamContext, topic_arn: str) -> SnsSink:
    sink = SnsSink(SnsSinkConfig(type="sns", topic_arn=topic_arn), context)
    sinks.append(sink)
    return sink


def eventbridge_sink(sinks: list[Any], context: StreamContext, bus: str, **options: Any) -> EventBridgeSink:
    sink = EventBridgeSink(EventBridgeSinkConfig(type="eventbridge", event_bus_name=bus, **options), context)
    sinks.append(sink)
    return sink


def kinds(failures: Sequence[Failure]) -> list[type[DeliveryError]]:
    return [type(failure.error) for failure in failures]


# --- SQS ---------------------------------------------------------------------------------------------------------


def test_sqs_standard_queue_receives_every_message_with_attributes_and_key_order(
    sqs_client: Any, context: StreamContext, sinks: list[Any]
) -> None:
    url, _ = create_queue(sqs_client)
    sink = sqs_sink(sinks, context, url)
    calls = count_calls(sink._client, "SendMessageBatch")
    batch = messages(context, 25)

    assert sink.send(batch) == []

    assert [len(call["Entries"]) for call in calls] == [10, 10, 5]
    assert [entry["Id"] for entry in calls[0]["Entries"]] == [str(i) for i in range(10)]
    received = drain(sqs_client, url, 25)
    assert sorted(m["Body"] for m in received) == sorted(m.body for m in batch)
    for arrived in received:
        assert arrived["MessageAttributes"] == {
            "eventName": {"DataType": "String", "StringValue": "INSERT"},
            "table": {"DataType": "String", "StringValue": "products"},
        }
        assert "MessageGroupId" not in arrived["Attributes"]
    for product in ("p-1", "p-2", "p-3"):
        sequences = [sequence_of(m["Body"]) for m in received if json.loads(m["Body"])["keys"]["productId"] == product]
        assert sequences == sorted(sequences)
        assert len(sequences) >= 8


def test_sqs_fifo_queue_gets_the_item_key_as_group_and_the_event_id_as_deduplication(
    sqs_client: Any, context: StreamContext, sinks: list[Any]
) -> None:
    url, _ = create_queue(sqs_client, fifo=True)
    sink = sqs_sink(sinks, context, url)
    batch = messages(context, 14, products=("p-1", "p-2"))

    assert sink.send(batch) == []

    received = drain(sqs_client, url, 14)
    by_body = {m.body: m for m in batch}
    for arrived in received:
        sent = by_body[arrived["Body"]]
        assert arrived["Attributes"]["MessageGroupId"] == f'{{"productId":"{sent.event.keys["productId"]}"}}'
        assert arrived["Attributes"]["MessageDeduplicationId"] == sent.event.event_id
    for group in ('{"productId":"p-1"}', '{"productId":"p-2"}'):
        sequences = [sequence_of(m["Body"]) for m in received if m["Attributes"]["MessageGroupId"] == group]
        assert sequences == sorted(sequences)
        assert len(sequences) == 7


def test_sqs_splits_a_batch_by_request_size(sqs_client: Any, context: StreamContext, sinks: list[Any]) -> None:
    url, _ = create_queue(sqs_client)
    sink = sqs_sink(sinks, context, url)
    calls = count_calls(sink._client, "SendMessageBatch")
    batch = [message(context, n, f"p-{n}", description="x" * 100_000) for n in range(5)]

    assert sink.send(batch) == []

    assert [len(call["Entries"]) for call in calls] == [2, 2, 1]
    for call in calls:
        assert sum(len(entry["MessageBody"].encode()) for entry in call["Entries"]) <= aws.MAX_REQUEST_BYTES
    received = drain(sqs_client, url, 5)
    assert sorted(m["Body"] for m in received) == sorted(m.body for m in batch)


def test_sqs_oversize_message_fails_permanently_and_the_others_arrive(
    sqs_client: Any, context: StreamContext, sinks: list[Any]
) -> None:
    url, _ = create_queue(sqs_client)
    sink = sqs_sink(sinks, context, url)
    big = message(context, 1, "p-big", description="x" * LIMIT)
    batch = [message(context, 0, "p-1"), big, message(context, 2, "p-2")]

    failures = sink.send(batch)

    assert [f.message for f in failures] == [big]
    assert isinstance(failures[0].error, PermanentDeliveryError)
    assert str(failures[0].error).startswith("oversize: ")
    assert str(failures[0].error).endswith(f" bytes > {LIMIT}")
    received = drain(sqs_client, url, 2)
    assert sorted(m["Body"] for m in received) == sorted([batch[0].body, batch[2].body])


def test_sqs_counts_the_attributes_in_the_message_size(context: StreamContext, sinks: list[Any]) -> None:
    sink = sqs_sink(sinks, context, "http://127.0.0.1:1/123456789012/never-called")
    attributes = len("eventName") + len("String") + len("INSERT") + len("table") + len("String") + len("products")
    fits = message(context, 0, body="x" * (LIMIT - attributes))
    too_big = message(context, 1, body="x" * (LIMIT - attributes + 1))

    assert sink._measure(fits) == LIMIT
    with pytest.raises(PermanentDeliveryError, match=rf"^oversize: {LIMIT + 1} bytes > {LIMIT}$"):
        sink._measure(too_big)


def test_sqs_invalid_body_character_fails_that_message_only(
    sqs_client: Any, context: StreamContext, sinks: list[Any]
) -> None:
    url, _ = create_queue(sqs_client)
    sink = sqs_sink(sinks, context, url)
    bad = message(context, 1, body='{"text": "nul \x00 here"}')
    batch = [message(context, 0), bad, message(context, 2)]

    failures = sink.send(batch)

    assert [(f.message, type(f.error)) for f in failures] == [(bad, PermanentDeliveryError)]
    assert "U+0000" in str(failures[0].error)
    assert len(drain(sqs_client, url, 2)) == 2


def test_sqs_entry_rejected_by_the_service_fails_alone_and_later_chunks_wait(
    sqs_client: Any, context: StreamContext, sinks: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto reports an entry in Failed[] (SenderFault true) only for an invalid DelaySeconds, which the sink never
    # sets: the request of one entry is altered here; the call, the response and its parsing are real.
    url, _ = create_queue(sqs_client)
    sink = sqs_sink(sinks, context, url)
    batch = messages(context, 12)
    build = sink._entry

    def entry(position: int, msg: Message) -> Any:
        built = build(position, msg)
        if msg is batch[3]:
            built["DelaySeconds"] = 1000
        return built

    monkeypatch.setattr(sink, "_entry", entry)

    failures = sink.send(batch)

    assert [f.message for f in failures] == [batch[3], batch[10], batch[11]]
    assert kinds(failures) == [PermanentDeliveryError, NotSentError, NotSentError]
    assert "InvalidParameterValue" in str(failures[0].error)
    assert "not sent" in str(failures[1].error)
    received = drain(sqs_client, url, 9)
    assert sorted(m["Body"] for m in received) == sorted(m.body for i, m in enumerate(batch) if i < 10 and i != 3)


def test_sqs_missing_queue_fails_every_message_permanently(
    moto: MotoServer, context: StreamContext, sinks: list[Any]
) -> None:
    sink = sqs_sink(sinks, context, f"{moto.url}/123456789012/{unique('missing')}")
    batch = messages(context, 4)

    failures = sink.send(batch)

    assert [f.message for f in failures] == batch
    assert kinds(failures) == [PermanentDeliveryError] * 4
    assert "NonExistentQueue" in str(failures[0].error) or "QueueDoesNotExist" in str(failures[0].error)


def test_unreachable_endpoint_is_transient_for_every_message(context: StreamContext, sinks: list[Any]) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sink = sqs_sink(sinks, context, f"{endpoint}/123456789012/queue", endpoint_url=endpoint)
    calls = count_calls(sink._client, "SendMessageBatch")
    batch = messages(context, 13)

    failures = sink.send(batch)

    assert [f.message for f in failures] == batch
    assert kinds(failures) == [TransientDeliveryError] * 10 + [NotSentError] * 3
    assert "EndpointConnectionError" in str(failures[0].error)
    assert "not sent" in str(failures[12].error)
    assert len(calls) == 1  # the second chunk waits for the first


# --- SNS ---------------------------------------------------------------------------------------------------------


def subscribe(sns_client: Any, topic_arn: str, queue_arn: str, raw: bool) -> None:
    sns_client.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true" if raw else "false"},
    )


@pytest.mark.parametrize("raw", [False, True], ids=["envelope", "raw"])
def test_sns_standard_topic_delivers_to_a_subscribed_queue(
    sns_client: Any, sqs_client: Any, context: StreamContext, sinks: list[Any], raw: bool
) -> None:
    topic_arn = sns_client.create_topic(Name=unique("topic"))["TopicArn"]
    url, queue_arn = create_queue(sqs_client)
    subscribe(sns_client, topic_arn, queue_arn, raw)
    sink = sns_sink(sinks, context, topic_arn)
    calls = count_calls(sink._client, "PublishBatch")
    batch = messages(context, 12)

    assert sink.send(batch) == []

    assert [len(call["PublishBatchRequestEntries"]) for call in calls] == [10, 2]
    received = drain(sqs_client, url, 12)
    if raw:
        assert sorted(m["Body"] for m in received) == sorted(m.body for m in batch)
        for arrived in received:
            assert arrived["MessageAttributes"]["eventName"] == {"DataType": "String", "StringValue": "INSERT"}
            assert arrived["MessageAttributes"]["table"] == {"DataType": "String", "StringValue": "products"}
    else:
        envelopes = [json.loads(m["Body"]) for m in received]
        assert sorted(e["Message"] for e in envelopes) == sorted(m.body for m in batch)
        for envelope in envelopes:
            assert envelope["TopicArn"] == topic_arn
            assert envelope["MessageAttributes"] == {
                "eventName": {"Type": "String", "Value": "INSERT"},
                "table": {"Type": "String", "Value": "products"},
            }
    bodies = [m["Body"] if raw else json.loads(m["Body"])["Message"] for m in received]
    for product in ("p-1", "p-2", "p-3"):
        sequences = [sequence_of(b) for b in bodies if json.loads(b)["keys"]["productId"] == product]
        assert sequences == sorted(sequences)


def test_sns_fifo_topic_delivers_to_a_fifo_queue_with_the_group_id(
    sns_client: Any, sqs_client: Any, context: StreamContext, sinks: list[Any]
) -> None:
    topic_arn = sns_client.create_topic(Name=unique("topic") + ".fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    url, queue_arn = create_queue(sqs_client, fifo=True)
    subscribe(sns_client, topic_arn, queue_arn, raw=True)
    sink = sns_sink(sinks, context, topic_arn)
    batch = messages(context, 6, products=("p-1", "p-2"))

    assert sink.send(batch) == []

    received = drain(sqs_client, url, 6)
    by_body = {m.body: m for m in batch}
    for arrived in received:
        sent = by_body[arrived["Body"]]
        assert arrived["Attributes"]["MessageGroupId"] == f'{{"productId":"{sent.event.keys["productId"]}"}}'
        assert arrived["Attributes"]["MessageDeduplicationId"] == sent.event.event_id
    for group in ('{"productId":"p-1"}', '{"productId":"p-2"}'):
        sequences = [sequence_of(m["Body"]) for m in received if m["Attributes"]["MessageGroupId"] == group]
        assert sequences == sorted(sequences)
        assert len(sequences) == 3


def test_sns_oversize_message_fails_permanently_and_the_others_arrive(
    sns_client: Any, sqs_client: Any, context: StreamContext, sinks: list[Any]
) -> None:
    topic_arn = sns_client.create_topic(Name=unique("topic"))["TopicArn"]
    url, queue_arn = create_queue(sqs_client)
    subscribe(sns_client, topic_arn, queue_arn, raw=True)
    sink = sns_sink(sinks, context, topic_arn)
    big = message(context, 1, "p-big", description="x" * LIMIT)
    batch = [message(context, 0, "p-1"), big, message(context, 2, "p-2")]

    failures = sink.send(batch)

    assert [(f.message, type(f.error)) for f in failures] == [(big, PermanentDeliveryError)]
    assert str(failures[0].error).startswith("oversize: ")
    assert sorted(m["Body"] for m in drain(sqs_client, url, 2)) == sorted([batch[0].body, batch[2].body])


def test_sns_entry_rejected_by_the_service_fails_alone(
    sns_client: Any, sqs_client: Any, context: StreamContext, sinks: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto puts an entry in Failed[] for a deduplication id on a standard topic; the sink never sends one there,
    # so one entry's request is altered; call, response and parsing are real.
    topic_arn = sns_client.create_topic(Name=unique("topic"))["TopicArn"]
    url, queue_arn = create_queue(sqs_client)
    subscribe(sns_client, topic_arn, queue_arn, raw=True)
    sink = sns_sink(sinks, context, topic_arn)
    batch = messages(context, 4)
    build = sink._entry

    def entry(position: int, msg: Message) -> Any:
        built = build(position, msg)
        if msg is batch[1]:
            built["MessageDeduplicationId"] = "not-for-a-standard-topic"
        return built

    monkeypatch.setattr(sink, "_entry", entry)

    failures = sink.send(batch)

    assert [(f.message, type(f.error)) for f in failures] == [(batch[1], PermanentDeliveryError)]
    assert str(failures[0].error).startswith("InvalidParameter")
    assert sorted(m["Body"] for m in drain(sqs_client, url, 3)) == sorted(m.body for m in batch if m is not batch[1])


def test_sns_missing_topic_fails_every_message_permanently(context: StreamContext, sinks: list[Any]) -> None:
    sink = sns_sink(sinks, context, f"arn:aws:sns:us-east-1:123456789012:{unique('missing')}")
    batch = messages(context, 3)

    failures = sink.send(batch)

    assert [f.message for f in failures] == batch
    assert kinds(failures) == [PermanentDeliveryError] * 3
    assert "NotFound" in str(failures[0].error)


# --- EventBridge -------------------------------------------------------------------------------------------------


def bus_to_queue(events_client: Any, sqs_client: Any, source: str) -> tuple[str, str]:
    bus = unique("bus")
    events_client.create_event_bus(Name=bus)
    url, queue_arn = create_queue(sqs_client)
    rule = unique("rule")
    events_client.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": [source]}))
    events_client.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return bus, url


@pytest.mark.parametrize("detail_type", [None, "ProductChanged"])
def test_eventbridge_rule_delivers_events_with_the_body_as_detail(
    events_client: Any, sqs_client: Any, context: StreamContext, sinks: list[Any], detail_type: str | None
) -> None:
    source = unique("consumer.test")
    bus, url = bus_to_queue(events_client, sqs_client, source)
    sink = eventbridge_sink(sinks, context, bus, source=source, detail_type=detail_type)
    calls = count_calls(sink._client, "PutEvents")
    batch = [message(context, n, "p-1", event_name="MODIFY" if n % 2 else "INSERT") for n in range(12)]

    assert sink.send(batch) == []

    assert [len(call["Entries"]) for call in calls] == [10, 2]
    received = [json.loads(m["Body"]) for m in drain(sqs_client, url, 12)]
    by_id = {m.event.event_id: m for m in batch}
    for event in received:
        sent = by_id[event["detail"]["eventID"]]
        assert event["detail"] == json.loads(sent.body)
        assert event["detail-type"] == (detail_type or sent.event.event_name.value)
        assert event["source"] == source
        assert event["resources"] == [STREAM_ARN]
        assert event["time"] == sent.event.approximate_creation.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [e["detail"]["sequenceNumber"] for e in received] == [m.event.sequence_number for m in batch]


def test_eventbridge_non_object_detail_fails_that_message_only(
    events_client: Any, sqs_client: Any, context: StreamContext, sinks: list[Any]
) -> None:
    source = unique("consumer.test")
    bus, url = bus_to_queue(events_client, sqs_client, source)
    sink = eventbridge_sink(sinks, context, bus, source=source)
    batch = messages(context, 5)
    batch[1] = Message(batch[1].event, "route", "[1, 2]", "application/json")
    batch[3] = Message(batch[3].event, "route", "not json", "text/plain")

    failures = sink.send(batch)

    assert [f.message for f in failures] == [batch[1], batch[3]]
    assert kinds(failures) == [PermanentDeliveryError] * 2
    assert {str(f.error) for f in failures} == {"EventBridge detail must be a JSON object"}
    received = [json.loads(m["Body"]) for m in drain(sqs_client, url, 3)]
    assert sorted(e["detail"]["eventID"] for e in received) == sorted(batch[i].event.event_id for i in (0, 2, 4))


def test_eventbridge_entry_rejected_by_the_service_fails_alone(
    events_client: Any, sqs_client: Any, context: StreamContext, sinks: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sink checks the detail first, so a malformed one is put into one entry's request here for moto to
    # answer with an entry-level MalformedDetail.
    source = unique("consumer.test")
    bus, url = bus_to_queue(events_client, sqs_client, source)
    sink = eventbridge_sink(sinks, context, bus, source=source)
    batch = messages(context, 3)
    build = sink._entry

    def entry(msg: Message) -> Any:
        built = build(msg)
        if msg is batch[0]:
            built["Detail"] = "{not json"
        return built

    monkeypatch.setattr(sink, "_entry", entry)

    failures = sink.send(batch)

    assert [(f.message, type(f.error)) for f in failures] == [(batch[0], PermanentDeliveryError)]
    assert str(failures[0].error).startswith("MalformedDetail")
    assert len(drain(sqs_client, url, 2)) == 2


def test_eventbridge_oversize_event_fails_permanently(
    events_client: Any, sqs_client: Any, context: StreamContext, sinks: list[Any]
) -> None:
    source = unique("consumer.test")
    bus, url = bus_to_queue(events_client, sqs_client, source)
    sink = eventbridge_sink(sinks, context, bus, source=source)
    big = message(context, 1, "p-big", description="x" * LIMIT)
    batch = [message(context, 0), big, message(context, 2)]

    failures = sink.send(batch)

    assert [(f.message, type(f.error)) for f in failures] == [(big, PermanentDeliveryError)]
    assert str(failures[0].error).startswith("oversize: ")
    assert len(drain(sqs_client, url, 2)) == 2


def test_eventbridge_missing_bus_fails_every_message_permanently(context: StreamContext, sinks: list[Any]) -> None:
    sink = eventbridge_sink(sinks, context, unique("missing-bus"))
    batch = messages(context, 3)

    failures = sink.send(batch)

    assert [f.message for f in failures] == batch
    assert kinds(failures) == [PermanentDeliveryError] * 3
    assert "ResourceNotFoundException" in str(failures[0].error)


# --- what moto cannot produce: hand-built responses and errors ---------------------------------------------------


@pytest.mark.parametrize("module", [sqs, sns], ids=["sqs", "sns"])
def test_batch_response_sender_fault_decides_permanent_or_transient(module: Any) -> None:
    response = {
        "Successful": [{"Id": "0", "MessageId": "m0"}, {"Id": "3", "MessageId": "m3"}],
        "Failed": [
            {"Id": "1", "Code": "InvalidParameterValue", "Message": "bad", "SenderFault": True},
            {"Id": "2", "Code": "InternalError", "SenderFault": False},
        ],
    }

    failures = module.failures_from_response(5, response)

    assert [(p, type(e)) for p, e in failures] == [
        (1, PermanentDeliveryError),
        (2, TransientDeliveryError),
        (4, TransientDeliveryError),  # in neither list
    ]
    assert str(failures[0][1]) == "InvalidParameterValue: bad"


def test_eventbridge_response_error_codes() -> None:
    codes = ["ThrottlingException", "InternalException", "InternalFailure", "ServiceUnavailable", "InvalidArgument"]
    response = {
        "FailedEntryCount": 6,
        "Entries": [{"EventId": "e0"}, *({"ErrorCode": c, "ErrorMessage": "m"} for c in codes), {"ErrorCode": "X"}],
    }

    failures = eventbridge.failures_from_response(8, response)  # type: ignore[arg-type]

    assert [(p, type(e)) for p, e in failures] == [
        (1, ThrottledError),  # a TransientDeliveryError, counted as throttling
        (2, TransientDeliveryError),
        (3, TransientDeliveryError),
        (4, TransientDeliveryError),
        (5, PermanentDeliveryError),
        (6, PermanentDeliveryError),
        (7, TransientDeliveryError),  # no result at all
    ]


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},  # type: ignore[typeddict-item]
        "SendMessageBatch",
    )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (client_error("ThrottlingException", 400), ThrottledError),
        (client_error("Throttling", 400), ThrottledError),
        (client_error("AWS.SimpleQueueService.RequestThrottled", 403), ThrottledError),
        (client_error("KMSThrottling", 400), ThrottledError),
        (client_error("RequestTimeout", 400), TransientDeliveryError),
        (client_error("InternalError", 500), TransientDeliveryError),
        (client_error("SomethingNew", 503), TransientDeliveryError),
        (client_error("TooManyRequests", 429), ThrottledError),
        (client_error("NotFound", 404), PermanentDeliveryError),
        (client_error("AWS.SimpleQueueService.NonExistentQueue", 400), PermanentDeliveryError),
        (client_error("InvalidParameter", 400), PermanentDeliveryError),
        (client_error("AccessDenied", 403), PermanentDeliveryError),
        (client_error("AuthorizationError", 403), PermanentDeliveryError),
        (EndpointConnectionError(endpoint_url="http://x"), TransientDeliveryError),
        (ReadTimeoutError(endpoint_url="http://x"), TransientDeliveryError),
        (ParamValidationError(report="bad"), PermanentDeliveryError),
    ],
)
def test_whole_call_errors_are_classified(error: Exception, kind: type[DeliveryError]) -> None:
    # ThrottledError is a TransientDeliveryError (retried the same way), told apart for the throttling metric.
    assert type(clients.delivery_error(error, "call")) is kind


def test_a_throttled_chunk_holds_back_the_later_chunks(context: StreamContext) -> None:
    batch = messages(context, 25)
    sent: list[int] = []

    def call(chunk: Sequence[Message]) -> Sequence[tuple[int, DeliveryError]]:
        sent.append(len(chunk))
        if len(sent) == 2:
            raise client_error("ThrottlingException", 400)
        return ()

    failures = aws.send_in_chunks(batch, lambda _: 100, call, "call")

    assert sent == [10, 10]
    assert [f.message for f in failures] == batch[10:]
    assert kinds(failures) == [ThrottledError] * 10 + [NotSentError] * 5
    assert "ThrottlingException" in str(failures[0].error)
    assert "not sent" in str(failures[10].error)


def test_chunks_respect_count_and_bytes(context: StreamContext) -> None:
    batch = messages(context, 4)
    sized = [(i, m, s) for i, (m, s) in enumerate(zip(batch, [100_000, 100_000, 62_144, 1], strict=True))]

    assert [[i for i, _, _ in c] for c in aws.chunks(sized)] == [[0, 1, 2], [3]]
    assert [len(c) for c in aws.chunks([(i, batch[0], 1) for i in range(21)])] == [10, 10, 1]


def test_fifo_ids_are_canonical_and_valid(context: StreamContext) -> None:
    event = decode_record(record(1, "p-1"), context)
    two_keys = {"sk": Decimal("2.50"), "pk": "a"}

    assert aws.item_key(event.keys) == '{"productId":"p-1"}'
    assert aws.item_key(two_keys) == '{"pk":"a","sk":2.50}'
    assert aws.item_key(dict(reversed(two_keys.items()))) == aws.item_key(two_keys)
    spaced = aws.fifo_id(aws.item_key({"pk": "with space"}))
    assert spaced.startswith("sha256:")
    assert spaced == aws.fifo_id('{"pk":"with space"}')
    assert aws.fifo_id("x" * 129).startswith("sha256:")
    assert aws.fifo_id("x" * 128) == "x" * 128


def test_sinks_are_registered_and_configure_their_clients(moto: MotoServer, context: StreamContext) -> None:
    assert registry._FACTORIES["sqs"] is SqsSink
    assert registry._FACTORIES["sns"] is SnsSink
    assert registry._FACTORIES["eventbridge"] is EventBridgeSink
    inherited = SqsSink(SqsSinkConfig(type="sqs", queue_url=f"{moto.url}/123456789012/q"), context)
    own = SnsSink(
        SnsSinkConfig(
            type="sns",
            topic_arn="arn:aws:sns:eu-west-1:123456789012:t",
            region="eu-west-1",
            endpoint_url="http://127.0.0.1:9",
        ),
        context,
    )
    try:
        assert inherited._client.meta.region_name == LOCAL_REGION
        assert inherited._client.meta.endpoint_url == moto.url
        assert own._client.meta.region_name == "eu-west-1"
        assert own._client.meta.endpoint_url == "http://127.0.0.1:9"
        config: Any = inherited._client.meta.config
        # botocore reads the dict's max_attempts as retries: 3 retries, 4 attempts in all.
        assert config.retries == {"mode": "standard", "total_max_attempts": 4}
        assert (config.connect_timeout, config.read_timeout) == (5, 30)
    finally:
        inherited.close()
        own.close()


def test_fifo_calls_hold_one_message_per_group(context: StreamContext) -> None:
    # If an entry failed while a later entry of the same group in the same call succeeded, the resent one would
    # arrive after it: so a FIFO call never holds two messages of one item.
    batch = messages(context, 6, products=("p-1", "p-1", "p-2"))
    sized = [(index, message, 100) for index, message in enumerate(batch)]
    planned = aws.chunks(sized, group=aws.group_id)
    for call in planned:
        groups = [aws.group_id(message) for _, message, _ in call]
        assert len(groups) == len(set(groups))
    assert [index for call in planned for index, _, _ in call] == list(range(6))  # order kept
    assert len(aws.chunks(sized)) == 1  # standard destinations batch freely
