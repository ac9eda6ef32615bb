"""`consumer redrive` from a dead-letter file and from an SQS queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from consumer import files
from consumer.deadletter import DeadLetter, entry
from consumer.decode import decode_record
from consumer.errors import DecodeError, PermanentDeliveryError
from consumer.events import StreamContext
from consumer.local import LOCAL_REGION, MotoServer

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/2026-11-29T07:28:02.945"
CONTEXT = StreamContext(stream_arn=ARN, region=LOCAL_REGION)
WHEN = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
APPENDER = Path(__file__).with_name("appender.py")


def _letter(sequence: int, route: str | None, sink: str | None, event_id: str | None = None) -> str:
    record = {
        "eventID": event_id or f"evt-{sequence}",
        "eventName": "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": 1764403200000,
            "Keys": {"productId": {"S": f"p-{sequence}"}},
            "NewImage": {"productId": {"S": f"p-{sequence}"}, "price": {"N": "25.99"}},
            "SequenceNumber": str(sequence),
            "SizeBytes": 10,
        },
    }
    event = decode_record(json.dumps(record).encode(), CONTEXT)
    letter = DeadLetter(route, sink, PermanentDeliveryError("HTTP 400"), 1, WHEN, WHEN, str(sequence), event)
    return entry(letter, "app", CONTEXT)


def _undecodable() -> str:
    letter = DeadLetter(None, None, DecodeError("not JSON"), 0, WHEN, WHEN, "99", raw_data=b"\x00garbage")
    return entry(letter, "app", CONTEXT)


def _config(tmp_path: Path, moto: MotoServer, out: Path) -> Path:
    config = {
        "application_name": "app",
        "source": {"table_name": "products", "region": LOCAL_REGION, "endpoint_url": moto.url},
        "sinks": [{"type": "file", "name": "out", "path": str(out)}],
        "routes": [{"name": "all", "sinks": ["out"], "format": "lambda"}],
    }
    path = tmp_path / "consumer.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _redrive(config: Path, source: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
    return subprocess.run(
        [sys.executable, "-m", "consumer", "redrive", "--config", str(config), "--from", source],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_redrive_from_a_file_delivers_what_it_can_and_keeps_the_rest(tmp_path: Path, moto: MotoServer) -> None:
    out = tmp_path / "delivered.jsonl"
    dead_letters = tmp_path / "dead-letters.jsonl"
    dead_letters.write_text("\n".join([_letter(1, "all", "out"), _undecodable(), _letter(2, "all", "out")]) + "\n")
    result = _redrive(_config(tmp_path, moto, out), f"file:{dead_letters}")
    assert result.returncode == 1, result.stderr  # one entry could not be redriven
    assert "2 delivered, 1 kept" in result.stdout
    delivered = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["eventID"] for r in delivered] == ["evt-1", "evt-2"]  # idempotency keys unchanged
    assert delivered[0]["eventSourceARN"] == ARN
    assert delivered[0]["dynamodb"]["ApproximateCreationDateTime"] == 1764403200
    (kept,) = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert kept["rawData"] == "AGdhcmJhZ2U="

    again = _redrive(_config(tmp_path, moto, out), f"file:{dead_letters}")
    assert "0 delivered, 1 kept" in again.stdout


def test_redrive_from_an_sqs_queue_deletes_only_what_was_delivered(tmp_path: Path, moto: MotoServer) -> None:
    sqs: Any = boto3.client("sqs", region_name=LOCAL_REGION, endpoint_url=moto.url)
    queue = sqs.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "30"})[
        "QueueUrl"
    ]
    for body in (_letter(1, "all", "out"), _letter(2, "all", "out"), _undecodable()):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    out = tmp_path / "delivered.jsonl"
    result = _redrive(_config(tmp_path, moto, out), f"sqs:{queue}")
    assert "2 delivered, 1 kept" in result.stdout, result.stderr
    assert sorted(json.loads(x)["eventID"] for x in out.read_text().splitlines()) == ["evt-1", "evt-2"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert (
        int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 1
    )


class _Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RefuseEveryFifth)
        self.accepted: list[str] = []
        self.refused: list[str] = []


class _RefuseEveryFifth(BaseHTTPRequestHandler):
    """Takes each record (the `lambda` format) but refuses with 400 those whose index is a multiple of five."""

    server: _Receiver

    def do_POST(self) -> None:
        event_id = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["eventID"]
        refuse = int(event_id.rsplit("-", 1)[1]) % 5 == 0
        (self.server.refused if refuse else self.server.accepted).append(event_id)
        time.sleep(0.005)  # a real endpoint's round trip: appenders have time to write while redrive runs
        self.send_response(400 if refuse else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _webhook_config(tmp_path: Path, receiver: _Receiver) -> Path:
    config = {
        "application_name": "app",
        "source": {"table_name": "products", "region": LOCAL_REGION},
        "sinks": [{"type": "webhook", "name": "out", "url": f"http://127.0.0.1:{receiver.server_address[1]}/"}],
        "routes": [{"name": "all", "sinks": ["out"], "format": "lambda"}],
        "delivery": {"max_retry_attempts": 0},
    }
    path = tmp_path / "consumer.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _file_ids(path: Path) -> list[str]:
    return [json.loads(line)["record"]["eventID"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_redrive_from_a_file_loses_nothing_appended_while_it_runs_and_keeps_the_mode(
    tmp_path: Path, receiver: _Receiver
) -> None:
    dead_letters = tmp_path / "dead-letters.jsonl"
    go, stop = tmp_path / "go", tmp_path / "stop"
    appenders = [
        subprocess.Popen(
            [sys.executable, str(APPENDER), "destination", str(dead_letters), name, str(go), str(stop)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("shard1", "shard2")
    ]
    try:
        go.touch()
        while not dead_letters.exists() or len(dead_letters.read_bytes().splitlines()) < 100:
            time.sleep(0.01)
        result = _redrive(_webhook_config(tmp_path, receiver), f"file:{dead_letters}")
        time.sleep(0.2)  # the appenders go on after the redrive, into the file it left
        stop.touch()
        written = [event_id for appender in appenders for event_id in appender.communicate(timeout=60)[0].split()]
    finally:
        for appender in appenders:
            if appender.poll() is None:
                appender.kill()
                appender.communicate()
    assert result.returncode == 1, result.stderr  # the refused ones were kept
    in_file = _file_ids(dead_letters)
    delivered = receiver.accepted
    assert len(delivered) >= 80
    assert receiver.refused
    # Every entry a writer got through is delivered or in the file, once; what was refused is in the file again.
    assert sorted(delivered + in_file) == sorted(written)
    assert set(receiver.refused) <= set(in_file)
    # Entries the receiver would have taken are in the file: they arrived once redrive had moved the file aside.
    assert any(int(event_id.rsplit("-", 1)[1]) % 5 for event_id in in_file)
    assert dead_letters.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("dead-letters")) == ["dead-letters.jsonl"]


def test_redrive_takes_up_what_a_redrive_that_died_left_aside_but_not_what_a_running_one_holds(
    tmp_path: Path, receiver: _Receiver
) -> None:
    dead_letters = tmp_path / "dead-letters.jsonl"
    dead_letters.write_text(_letter(1, "all", "out", "e-1") + "\n")
    died = tmp_path / "dead-letters.jsonl.redrive-0123456789ab"
    died.write_text(_letter(2, "all", "out", "e-2") + "\n" + _letter(5, "all", "out", "e-5") + "\n")
    running = tmp_path / "dead-letters.jsonl.redrive-ba9876543210"
    running.write_text(_letter(3, "all", "out", "e-3") + "\n")
    held = files.try_lock(running)
    assert held is not None
    try:
        result = _redrive(_webhook_config(tmp_path, receiver), f"file:{dead_letters}")
    finally:
        os.close(held)
    assert "2 delivered, 1 kept" in result.stdout, result.stderr
    assert sorted(receiver.accepted) == ["e-1", "e-2"]
    assert _file_ids(dead_letters) == ["e-5"]
    assert not died.exists()
    assert _file_ids(running) == ["e-3"]
