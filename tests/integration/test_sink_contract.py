"""One contract, every sink type: what the pipeline relies on, checked against a real destination for each.

A new sink type fails `test_every_registered_type_is_covered` until it has a destination here.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from consumer.config import config_from_mapping
from consumer.decode import decode_record
from consumer.errors import DeliveryError
from consumer.events import StreamContext
from consumer.formats import JSON, plain
from consumer.jsontext import dumps
from consumer.local import LOCAL_REGION, MotoServer
from consumer.sinks import Message, Sink, build_sink, registered_types

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/2026-11-29T07:28:02.945"

# A destination: builds the sink config and returns a reader of the event IDs that arrived, in order.
Destination = Callable[..., tuple[dict[str, Any], Callable[[], list[str]]]]


def _message(context: StreamContext, sequence: int) -> Message:
    record = {
        "eventID": f"evt-{uuid.uuid4().hex[:8]}-{sequence}",
        "eventName": "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": 1732800000000,
            "Keys": {"productId": {"S": "prod-123"}},
            "NewImage": {"productId": {"S": "prod-123"}, "price": {"N": f"{sequence}.99"}},
            "SequenceNumber": str(1000 + sequence),
            "SizeBytes": 10,
        },
    }
    event = decode_record(json.dumps(record).encode(), context)
    return Message(event, "contract", dumps(plain(event)), JSON)


class _Collector(ThreadingHTTPServer):
    def __init__(self, status: int) -> None:
        super().__init__(("127.0.0.1", 0), _Receive)
        self.status = status
        self.bodies: list[dict[str, Any]] = []


class _Receive(BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.server.status < 300:
            self.server.bodies.append(json.loads(body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return None


def _queue_reader(sqs: Any, queue_url: str, unwrap: Callable[[str], dict[str, Any]]) -> Callable[[], list[str]]:
    seen: list[str] = []

    def read() -> list[str]:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            for item in got.get("Messages", []):
                seen.append(unwrap(item["Body"])["eventID"])
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=item["ReceiptHandle"])
            if not got.get("Messages") and seen:
                break
        return seen

    return read


@pytest.fixture
def destinations(  # noqa: C901 - one small builder per sink type, side by side
    moto: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[dict[str, Destination]]:
    clients = {
        name: boto3.client(name, region_name=LOCAL_REGION, endpoint_url=moto.url) for name in ("sqs", "sns", "events")
    }
    sqs = clients["sqs"]
    servers: list[_Collector] = []

    def queue() -> tuple[str, str]:
        url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    def log(working: bool) -> tuple[dict[str, Any], Callable[[], list[str]]]:
        del working

        def read() -> list[str]:
            lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
            return [x["event_id"] for x in lines if x.get("event") == "change"]

        return {"type": "log"}, read

    def memory(working: bool) -> tuple[dict[str, Any], Callable[[], list[str]]]:
        del working
        return {"type": "memory"}, list  # the memory sink is its own destination: read in the test

    def file(working: bool) -> tuple[dict[str, Any], Callable[[], list[str]]]:
        path = tmp_path / ("out" if working else "missing-dir") / "events.jsonl"
        path.parent.mkdir(exist_ok=True) if working else None
        return {"type": "file", "path": str(path)}, lambda: [
            json.loads(x)["eventID"] for x in path.read_text().splitlines()
        ]

    def webhook(working: bool) -> tuple[dict[str, Any], Callable[[], list[str]]]:
        server = _Collector(200 if working else 400)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        return {"type": "webhook", "url": url, "timeout_seconds": 5}, lambda: [b["eventID"] for b in server.bodies]

    def sqs_destination(working: bool) -> tuple[dict[str, Any], Callable[[], list[str]]]:
        url, _ = queue()
        target = url if working else url.rsplit("/", 1)[0] + "/no-such-queue"
        return {"type": "sqs", "queue_url": target}, _queue_reader(sqs, url, json.loads)

    def sns(working: bool) -> tuple[dict[str, Any], Callable[[], list[str]]]:
        url, arn = queue()
        topic = clients["sns"].create_topic(Name=f"t-{uuid.uuid4().hex[:8]}")["TopicArn"]
        clients["sns"].subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
        )
        target = topic if working else topic.rsplit(":", 1)[0] + ":no-such-topic"
        return {"type": "sns", "topic_arn": target}, _queue_reader(sqs, url, json.loads)

    def eventbridge(working: bool) -> tuple[dict[str, Any], Callable[[], list[str]]]:
        url, arn = queue()
        source = f"contract-{uuid.uuid4().hex[:8]}"
        rule = f"r-{uuid.uuid4().hex[:8]}"
        clients["events"].put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
        clients["events"].put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
        config = {"type": "eventbridge", "source": source, "event_bus_name": "default" if working else "no-such-bus"}
        return config, _queue_reader(sqs, url, lambda body: json.loads(body)["detail"])

    def handler(working: bool) -> tuple[dict[str, Any], Callable[[], list[str]]]:
        log_path = tmp_path / f"handled-{uuid.uuid4().hex[:8]}.jsonl"
        code = (
            "import json\n"
            "def handler(event, context):\n"
            f"    if not {working}:\n"
            "        raise RuntimeError('downstream unavailable')\n"
            f"    with open({str(log_path)!r}, 'a') as out:\n"
            "        for record in event['Records']:\n"
            "            out.write(record['eventID'] + '\\n')\n"
        )
        module = tmp_path / f"fn_{uuid.uuid4().hex[:8]}.py"
        module.write_text(code)
        return {"type": "handler", "handler": f"{module}:handler"}, lambda: log_path.read_text().split()

    yield {
        "log": log,
        "memory": memory,
        "file": file,
        "webhook": webhook,
        "sqs": sqs_destination,
        "sns": sns,
        "eventbridge": eventbridge,
        "handler": handler,
    }
    for server in servers:
        server.shutdown()
        server.server_close()
    for client in clients.values():
        client.close()


SINK_TYPES = ["log", "memory", "file", "webhook", "sqs", "sns", "eventbridge", "handler"]
FAILABLE = ["file", "webhook", "sqs", "sns", "eventbridge", "handler"]


def _build(moto: MotoServer, sink_config: dict[str, Any]) -> tuple[Sink, StreamContext]:
    context = StreamContext(stream_arn=ARN, region=LOCAL_REGION, endpoint_url=moto.url)
    config = config_from_mapping(
        {
            "application_name": "contract",
            "source": {"table_name": "products", "region": LOCAL_REGION, "endpoint_url": moto.url},
            "sinks": [{"name": "under-test", **sink_config}],
        },
        environ={},
    )
    return build_sink(config.sinks[0], context), context


def test_every_registered_type_is_covered() -> None:
    assert sorted(registered_types()) == sorted(SINK_TYPES)


@pytest.mark.parametrize("sink_type", SINK_TYPES)
def test_accepted_messages_arrive_in_order(
    sink_type: str, moto: MotoServer, destinations: dict[str, Destination]
) -> None:
    config, received = destinations[sink_type](working=True)
    sink, context = _build(moto, config)
    if sink_type == "memory":
        kept: Any = sink
        received = lambda: [m.event.event_id for m in kept.messages]
    batch = [_message(context, i) for i in range(3)]
    try:
        assert list(sink.send([])) == []
        assert list(sink.send(batch)) == []
        assert received() == [m.event.event_id for m in batch]
    finally:
        sink.close()


@pytest.mark.parametrize("sink_type", FAILABLE)
def test_a_failing_destination_reports_typed_failures_never_success(
    sink_type: str, moto: MotoServer, destinations: dict[str, Destination]
) -> None:
    config, _ = destinations[sink_type](working=False)
    sink, context = _build(moto, config)
    batch = [_message(context, i) for i in range(3)]
    try:
        try:
            failures = sink.send(batch)
        except DeliveryError:
            return  # the whole batch refused, with a typed error: allowed by the contract
        assert [f.message for f in failures] == batch
        assert all(isinstance(f.error, DeliveryError) for f in failures)
    finally:
        sink.close()
