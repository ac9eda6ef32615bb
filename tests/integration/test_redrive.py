"""`consumer redrive` from a dead-letter file and from an SQS queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import yaml

from consumer.deadletter import DeadLetter, entry
from consumer.decode import StreamContext, decode_record
from consumer.errors import DecodeError, PermanentDeliveryError
from consumer.local import LOCAL_REGION, MotoServer

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/2026-11-29T07:28:02.945"
CONTEXT = StreamContext(stream_arn=ARN, region=LOCAL_REGION)
WHEN = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def _letter(sequence: int, route: str | None, sink: str | None) -> str:
    record = {
        "eventID": f"evt-{sequence}",
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
