"""On-failure destinations on the moto server: S3, overflow of large entries, the start-up check, redrive."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from harness import Worker, put_product, unique

from consumer.config import (
    Config,
    FileDestinationConfig,
    S3DestinationConfig,
    SnsDestinationConfig,
    SqsDestinationConfig,
    config_from_mapping,
)
from consumer.deadletter import (
    MAX_QUEUE_MESSAGE_BYTES,
    DeadLetter,
    build_destination,
    check_destination,
    destination_warnings,
    digest,
    entry,
)
from consumer.decode import decode_record
from consumer.errors import DecodeError, PermanentDeliveryError, StartupError
from consumer.events import StreamContext
from consumer.local import LOCAL_REGION, MotoServer

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/2026-11-29T07:28:02.945"
WHEN = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
BIG = 300 * 1024  # over the 256 KiB of a queue or topic


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _context(moto: MotoServer) -> StreamContext:
    return StreamContext(stream_arn=ARN, region=LOCAL_REGION, endpoint_url=moto.url)


def _letter(moto: MotoServer, sequence: int, *, sink: str = "out", size: int = 0) -> str:
    image = {"productId": {"S": f"p-{sequence}"}, "price": {"N": "25.99"}}
    if size:
        image["description"] = {"S": "x" * size}
    record = {
        "eventID": f"evt-{sequence}",
        "eventName": "MODIFY",
        "dynamodb": {
            "ApproximateCreationDateTime": 1764403200000,
            "Keys": {"productId": {"S": f"p-{sequence}"}},
            "NewImage": image,
            "OldImage": image,
            "SequenceNumber": str(sequence),
            "SizeBytes": 10 + 2 * size,
        },
    }
    event = decode_record(json.dumps(record).encode(), _context(moto))
    letter = DeadLetter("all", sink, PermanentDeliveryError("HTTP 400"), 3, WHEN, WHEN, str(sequence), event)
    return entry(letter, "app", _context(moto))


def _client(moto: MotoServer, service: str) -> Any:
    return boto3.client(service, region_name=LOCAL_REGION, endpoint_url=moto.url)  # type: ignore[call-overload]


def _bucket(moto: MotoServer) -> str:
    name = _name("dead-letters")
    _client(moto, "s3").create_bucket(Bucket=name)
    return name


def _objects(moto: MotoServer, bucket: str) -> dict[str, str]:
    s3 = _client(moto, "s3")
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8") for key in keys}


def _queue(moto: MotoServer) -> str:
    return str(_client(moto, "sqs").create_queue(QueueName=_name("dlq"))["QueueUrl"])


def _received(moto: MotoServer, queue_url: str) -> list[dict[str, Any]]:
    sqs = _client(moto, "sqs")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def _config(moto: MotoServer, tmp_path: Path, on_failure: dict[str, Any] | None = None) -> Config:
    data = {
        "application_name": "app",
        "source": {"table_name": _name("absent"), "region": LOCAL_REGION, "endpoint_url": moto.url},
        "sinks": [{"type": "file", "name": "out", "path": str(tmp_path / "delivered.jsonl")}],
        "routes": [{"name": "all", "sinks": ["out"], "format": "lambda"}],
        "on_failure": on_failure,
    }
    return config_from_mapping(data, {})


def test_s3_destination_stores_each_entry_whole_as_one_object(moto: MotoServer) -> None:
    bucket = _bucket(moto)
    config = S3DestinationConfig(type="s3", bucket=bucket, prefix="dl/")
    destination = build_destination(config, _context(moto))
    bodies = {1: _letter(moto, 1), 2: _letter(moto, 2, size=2 * 1024 * 1024)}  # any size
    destination.put(list(bodies.values()))
    destination.put([bodies[1]])  # a retried put overwrites its object
    destination.close()

    stored = _objects(moto, bucket)
    assert len(stored) == 2
    for sequence, body in bodies.items():
        (key,) = [k for k, v in stored.items() if v == body]
        assert re.fullmatch(rf"dl/app/2026-11-29/{sequence}-out-{digest(body)[:16]}\.json", key), key
    whole = json.loads(bodies[2])["record"]
    assert json.loads(stored[next(k for k in stored if k.startswith("dl/app/2026-11-29/2-"))])["record"] == whole
    assert len(whole["dynamodb"]["NewImage"]["description"]["S"]) == 2 * 1024 * 1024


def test_an_entry_too_large_for_the_queue_goes_whole_to_the_s3_overflow_and_a_pointer_to_the_queue(
    moto: MotoServer,
) -> None:
    bucket, queue_url = _bucket(moto), _queue(moto)
    overflow = S3DestinationConfig(type="s3", bucket=bucket, prefix="overflow/")
    config = SqsDestinationConfig(type="sqs", queue_url=queue_url, overflow=overflow)
    small, large = _letter(moto, 1), _letter(moto, 2, size=BIG)
    destination = build_destination(config, _context(moto))
    destination.put([small, large])
    destination.close()

    first, pointer = _received(moto, queue_url)
    assert first == json.loads(small)
    (key, stored) = next(iter(_objects(moto, bucket).items()))
    assert stored == large
    assert pointer["overflow"] == {"s3": f"s3://{bucket}/{key}"}
    assert pointer["record"] is None
    whole = json.loads(large)
    assert {k: v for k, v in pointer.items() if k not in {"overflow", "record"}} == {
        k: v for k, v in whole.items() if k != "record"
    }


def test_an_entry_too_large_for_the_topic_goes_whole_to_the_file_overflow(moto: MotoServer, tmp_path: Path) -> None:
    sns, sqs = _client(moto, "sns"), _client(moto, "sqs")
    topic = sns.create_topic(Name=_name("dead-letters"))["TopicArn"]
    queue_url = _queue(moto)
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    path = tmp_path / "overflow.jsonl"
    overflow = FileDestinationConfig(type="file", path=path)
    large = _letter(moto, 7, size=BIG)
    destination = build_destination(
        SnsDestinationConfig(type="sns", topic_arn=topic, overflow=overflow), _context(moto)
    )
    destination.put([large])
    destination.close()

    (pointer,) = _received(moto, queue_url)
    assert pointer["record"] is None
    assert pointer["overflow"] == {"file": str(path), "sha256": digest(large)}
    assert pointer["sequenceNumber"] == "7"
    assert path.read_text(encoding="utf-8") == large + "\n"
    assert path.stat().st_mode & 0o777 == 0o600


def test_without_an_overflow_an_entry_too_large_is_sent_without_its_images_rather_than_block(
    moto: MotoServer,
) -> None:
    queue_url = _queue(moto)
    large = _letter(moto, 3, size=BIG)
    undecodable = entry(
        DeadLetter(None, None, DecodeError("not JSON"), 0, WHEN, WHEN, "4", raw_data=b"\x00" * BIG),
        "app",
        _context(moto),
    )
    destination = build_destination(SqsDestinationConfig(type="sqs", queue_url=queue_url), _context(moto))
    destination.put([large, undecodable])  # does not raise: the shard goes on
    destination.close()

    truncated, raw = _received(moto, queue_url)
    whole = json.loads(large)
    assert truncated["truncated"] is True
    assert truncated["sequenceNumber"] == "3"
    assert truncated["error"] == whole["error"]
    assert truncated["record"]["eventID"] == "evt-3"
    assert truncated["record"]["dynamodb"]["Keys"] == {"productId": {"S": "p-3"}}
    assert "NewImage" not in truncated["record"]["dynamodb"]
    assert "OldImage" not in truncated["record"]["dynamodb"]
    assert raw["truncated"] is True
    assert "rawData" not in raw
    assert raw["sequenceNumber"] == "4"
    assert len(json.dumps(truncated)) < MAX_QUEUE_MESSAGE_BYTES


def test_the_start_up_check_passes_for_destinations_that_exist(moto: MotoServer, tmp_path: Path) -> None:
    topic = _client(moto, "sns").create_topic(Name=_name("dead-letters"))["TopicArn"]
    bucket = _bucket(moto)
    for on_failure in (
        {"type": "sqs", "queue_url": _queue(moto), "overflow": {"type": "s3", "bucket": bucket}},
        {"type": "sns", "topic_arn": topic, "overflow": {"type": "file", "path": str(tmp_path / "o.jsonl")}},
        {"type": "s3", "bucket": bucket, "prefix": "dl/"},
        {"type": "file", "path": str(tmp_path / "dead-letters.jsonl")},
    ):
        check_destination(_config(moto, tmp_path, on_failure))
    assert not (tmp_path / "dead-letters.jsonl").exists()  # checked, not created


@pytest.mark.parametrize(
    ("on_failure", "message"),
    [
        (
            {"type": "sqs", "queue_url": "{moto}/123456789012/absent-queue"},
            "on_failure: queue {moto}/123456789012/absent-queue does not exist",
        ),
        (
            {"type": "sns", "topic_arn": "arn:aws:sns:us-east-1:123456789012:absent-topic"},
            "on_failure: topic arn:aws:sns:us-east-1:123456789012:absent-topic does not exist",
        ),
        ({"type": "s3", "bucket": "absent-bucket-1f0c"}, "on_failure: bucket absent-bucket-1f0c does not exist"),
        (
            {"type": "file", "path": "{tmp}/absent/dead-letters.jsonl"},
            "on_failure: directory {tmp}/absent does not exist",
        ),
        ({"type": "file", "path": "{tmp}"}, "on_failure: {tmp} is not a regular file"),
        (
            {"type": "sqs", "queue_url": "{queue}", "overflow": {"type": "s3", "bucket": "absent-bucket-1f0c"}},
            "on_failure.overflow: bucket absent-bucket-1f0c does not exist",
        ),
    ],
)
def test_the_start_up_check_names_a_destination_that_does_not_exist(
    moto: MotoServer, tmp_path: Path, on_failure: dict[str, Any], message: str
) -> None:
    values = {"moto": moto.url, "tmp": str(tmp_path), "queue": _queue(moto)}
    filled = yaml.safe_load(yaml.safe_dump(on_failure).format(**values))
    with pytest.raises(StartupError) as raised:
        check_destination(_config(moto, tmp_path, filled))
    assert str(raised.value) == message.format(**values)


def test_consumer_run_refuses_a_missing_destination_before_the_engine_starts(moto: MotoServer, tmp_path: Path) -> None:
    queue_url = f"{moto.url}/123456789012/absent-queue"
    overflow = {"type": "s3", "bucket": _bucket(moto)}  # so that nothing is warned about
    config = _config(moto, tmp_path, {"type": "sqs", "queue_url": queue_url, "overflow": overflow})
    path = tmp_path / "consumer.yaml"
    # The source table does not exist either: the destination is checked first, before the stream is looked up.
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    result = _cli("run", "--config", str(path))
    assert result.returncode == 3
    assert result.stderr == f"consumer: cannot start: on_failure: queue {queue_url} does not exist\n"


def test_check_config_warns_about_a_queue_destination_without_an_overflow(moto: MotoServer, tmp_path: Path) -> None:
    queue_url = f"{moto.url}/123456789012/dead-letters"
    without = _config(moto, tmp_path, {"type": "sqs", "queue_url": queue_url})
    (warning,) = destination_warnings(without)
    assert "without the record's images" in warning
    with_overflow = _config(
        moto, tmp_path, {"type": "sqs", "queue_url": queue_url, "overflow": {"type": "s3", "bucket": "b-1"}}
    )
    assert destination_warnings(with_overflow) == []
    path = tmp_path / "consumer.yaml"
    path.write_text(yaml.safe_dump(without.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    result = _cli("check-config", "--config", str(path))
    assert result.returncode == 0
    assert result.stderr == f"consumer: warning: {warning}\n"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


def _redrive_config(moto: MotoServer, tmp_path: Path, on_failure: dict[str, Any] | None = None) -> Path:
    config = _config(moto, tmp_path, on_failure)
    path = tmp_path / "consumer.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    return path


def _delivered(tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "delivered.jsonl"
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] if out.exists() else []


def test_redrive_from_s3_delivers_and_deletes_what_it_can_and_keeps_the_rest(moto: MotoServer, tmp_path: Path) -> None:
    bucket = _bucket(moto)
    destination = build_destination(S3DestinationConfig(type="s3", bucket=bucket, prefix="dl/"), _context(moto))
    destination.put([_letter(moto, 1), _letter(moto, 2, sink="gone"), _letter(moto, 3, size=BIG)])
    destination.close()
    _client(moto, "s3").put_object(Bucket=bucket, Key="elsewhere/x.json", Body=b"{}")

    result = _cli("redrive", "--config", str(_redrive_config(moto, tmp_path)), "--from", f"s3://{bucket}/dl/")
    assert result.returncode == 1, result.stderr
    assert "2 delivered, 1 kept" in result.stdout
    delivered = _delivered(tmp_path)
    assert [r["eventID"] for r in delivered] == ["evt-1", "evt-3"]
    assert len(delivered[1]["dynamodb"]["NewImage"]["description"]["S"]) == BIG
    left = _objects(moto, bucket)
    (kept,) = [key for key in left if key.startswith("dl/")]
    assert sorted(left) == sorted([kept, "elsewhere/x.json"])  # outside the prefix: not touched
    assert json.loads(left[kept])["sink"] == "gone"


def test_redrive_from_a_queue_follows_pointers_to_the_overflow_and_keeps_truncated_entries(
    moto: MotoServer, tmp_path: Path
) -> None:
    bucket, queue_url = _bucket(moto), _queue(moto)
    overflow_file = tmp_path / "overflow.jsonl"
    context = _context(moto)
    to_s3 = build_destination(
        SqsDestinationConfig(type="sqs", queue_url=queue_url, overflow={"type": "s3", "bucket": bucket}), context
    )
    to_file = build_destination(
        SqsDestinationConfig(type="sqs", queue_url=queue_url, overflow={"type": "file", "path": overflow_file}),
        context,
    )
    without = build_destination(SqsDestinationConfig(type="sqs", queue_url=queue_url), context)
    to_s3.put([_letter(moto, 1, size=BIG)])
    to_file.put([_letter(moto, 2, size=BIG), _letter(moto, 4, size=BIG, sink="gone")])
    without.put([_letter(moto, 3, size=BIG)])
    for destination in (to_s3, to_file, without):
        destination.close()

    on_failure = {"type": "sqs", "queue_url": queue_url, "overflow": {"type": "s3", "bucket": bucket}}
    result = _cli("redrive", "--config", str(_redrive_config(moto, tmp_path, on_failure)), "--from", f"sqs:{queue_url}")
    assert "2 delivered, 2 kept" in result.stdout, result.stderr
    delivered = _delivered(tmp_path)
    assert sorted(r["eventID"] for r in delivered) == ["evt-1", "evt-2"]
    assert all(len(r["dynamodb"]["NewImage"]["description"]["S"]) == BIG for r in delivered)  # whole records
    assert _objects(moto, bucket) == {}  # the delivered entry's overflow left with it
    (kept_line,) = overflow_file.read_text(encoding="utf-8").splitlines()  # the one that failed again stays
    assert json.loads(kept_line)["sequenceNumber"] == "4"
    assert overflow_file.stat().st_mode & 0o777 == 0o600


class _Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RefusePoison)
        self.accepted: list[str] = []


class _RefusePoison(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        product = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["keys"]["productId"]
        refuse = product.startswith("poison")
        if not refuse:
            self.server.accepted.append(product)
        self.send_response(400 if refuse else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return None


@pytest.mark.engine
@pytest.mark.timeout(300)
def test_a_worker_dead_letters_a_large_item_through_the_overflow_and_its_shard_moves_on(
    moto: MotoServer, dynamodb: Any, table: str, start_worker: Callable[..., Worker]
) -> None:
    receiver = _Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    bucket, queue_url = _bucket(moto), _queue(moto)
    extra = {
        "sinks": [{"type": "webhook", "name": "hook", "url": f"http://127.0.0.1:{receiver.server_address[1]}/"}],
        "on_failure": {"type": "sqs", "queue_url": queue_url, "overflow": {"type": "s3", "bucket": bucket}},
    }
    try:
        worker = start_worker(unique("app"), table, extra=extra)
        put_product(dynamodb, table, "first", price=5)
        put_product(dynamodb, table, "poison-small", price=5)
        put_product(dynamodb, table, "poison-large", description="x" * BIG)
        put_product(dynamodb, table, "last", price=5)
        deadline = time.monotonic() + 150
        while receiver.accepted != ["first", "last"]:
            assert worker.process.poll() is None, worker.tail()
            assert time.monotonic() < deadline, f"accepted {receiver.accepted}\n{worker.tail()}"
            time.sleep(0.25)
        assert worker.stop() == 0
    finally:
        receiver.shutdown()
        receiver.server_close()
    small, pointer = sorted(_received(moto, queue_url), key=lambda e: int(e["sequenceNumber"]))
    assert small["record"]["dynamodb"]["Keys"] == {"productId": {"S": "poison-small"}}
    assert pointer["record"] is None
    ((key, stored),) = _objects(moto, bucket).items()
    assert pointer["overflow"] == {"s3": f"s3://{bucket}/{key}"}
    large = json.loads(stored)
    assert large["sequenceNumber"] == pointer["sequenceNumber"]
    assert large["record"]["dynamodb"]["NewImage"]["description"] == {"S": "x" * BIG}
