"""Fault scenarios for dead letters, shared files, bisect and start-up checks, on the real engine, judged by the oracle.

Several scenarios make one child's file writes fail with RLIMIT_FSIZE set on that child alone (prlimit on its
pid): the kernel then refuses, or cuts short, every write of that process past the limit, as a full disk would,
while the JVM, the other children and this test write freely. CPython ignores SIGXFSZ, so the child sees EFBIG
(or a short write) instead of dying.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import moto_lineage
import pytest
import yaml
from harness import Worker, unique
from oracle import Writer, check, resolve_truncated
from support import FAST_SMALL_BATCHES, Receiver, StartWorker, children_of, covers, wait, webhook

from consumer.local import LOCAL_REGION, MotoServer, create_streamed_table

pytestmark = [pytest.mark.engine, pytest.mark.faults, pytest.mark.timeout(300)]

BIG = 300_000  # a legal DynamoDB item, over the 256 KiB of an SQS message


@pytest.fixture
def redrive_receiver() -> Iterator[Receiver]:
    """The same endpoint once fixed, as redrive sees it (its configuration points there): it takes everything."""
    server = Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _letters(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def _as_plain(letter: dict[str, Any]) -> dict[str, Any]:
    """A dead-letter entry in the shape `covers` reads."""
    image = letter["record"]["dynamodb"]["NewImage"]
    return {"keys": {"productId": image["productId"]["S"]}, "new": {"version": image["version"]["N"]}}


def _consumer(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


def _lease_table_exists(dynamodb: Any, application: str) -> bool:
    return application in dynamodb.list_tables()["TableNames"]


def _limit_file_size(pid: int, limit: int | None) -> None:
    """Set (or, with None, lift) the file size limit of one process: its writes past `limit` fail."""
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY if limit is None else limit, hard))


def _retries(worker: Worker, sink: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in worker.log().splitlines() if x.startswith("{") and '"delivery retry"' in x]
    return [x for x in lines if x.get("event") == "delivery retry" and x.get("sink") == sink]


# -- item 3: redrive from a file while workers append to it ------------------------------------------------------


def test_file_redrive_twice_while_the_worker_appends(  # noqa: PLR0917 - fixtures
    dynamodb: Any,
    table: str,
    start_worker: StartWorker,
    receiver: Receiver,
    redrive_receiver: Receiver,
    tmp_path: Path,
) -> None:
    writer = Writer(dynamodb, table)
    receiver.answer = lambda n, body: (400, {}) if body["keys"]["productId"] == "k2" else (200, {})
    dead_letters = tmp_path / "dead-letters.jsonl"
    config = {**webhook(receiver), "on_failure": {"type": "file", "path": str(dead_letters)}}
    worker = start_worker(unique("app"), table, extra=config)
    # Redrive runs with the worker's configuration, its webhook pointing at the endpoint that now takes k2.
    redrive_config = yaml.safe_load((worker.directory / "consumer.yaml").read_text(encoding="utf-8"))
    redrive_config["sinks"][0]["url"] = redrive_receiver.url
    redrive_path = tmp_path / "redrive.yaml"
    redrive_path.write_text(yaml.safe_dump(redrive_config), encoding="utf-8")

    writer.write(5)
    wait(lambda: len(receiver.accepted) == 4, 150, "the worker reading", worker)
    writing = writer.write_in_background(60, per_second=5)  # one k2 a second: dead letters keep arriving
    redriven = []
    for round_ in range(2):
        wait(lambda: len(_letters(dead_letters)) >= 2, 150, f"dead letters before redrive {round_ + 1}", worker)
        result = _consumer("redrive", "--config", str(redrive_path), "--from", f"file:{dead_letters}")
        assert result.returncode == 0, result.stdout + result.stderr
        redriven.append(int(re.search(r"redriven: (\d+) delivered, 0 kept", result.stdout)[1]))  # type: ignore[index]
    writing.join()
    everything = lambda: [*receiver.accepted, *redrive_receiver.accepted, *map(_as_plain, _letters(dead_letters))]
    wait(covers(writer, everything), 150, "all delivered or dead-lettered", worker)
    assert worker.stop() == 0

    left = _letters(dead_letters)
    assert all(x >= 2 for x in redriven), redriven
    assert left, "no dead letter arrived after the second redrive: the scenario did not overlap"
    assert all(x["record"]["dynamodb"]["Keys"]["productId"]["S"] == "k2" for x in left)
    assert dead_letters.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("dead-letters")] == ["dead-letters.jsonl"]
    check(
        "file redrive x2 while the worker appends",
        writer,
        receiver.accepted + redrive_receiver.accepted,
        application=worker.application,
        dead_letters=left,
        streams=[receiver.accepted, redrive_receiver.accepted],
    )


# -- item 5: two shards' children append to one file, one of them failing ----------------------------------------


def test_two_children_append_to_one_file_while_one_cannot_write(lineage_url: str, start_worker: StartWorker) -> None:
    """Two shards read at once, their children appending to the worker's one file sink; one child's writes fail
    (file size limit) while the other's go on, then recover. The unit-level test (test_concurrent_files.py) makes
    four processes race on the locked append with a write that fails halfway through, many times; this proves the
    same on the engine: no torn line, nothing lost, no line written twice by the retries."""
    dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=lineage_url)
    table = unique("lineage")
    create_streamed_table(dynamodb, table)
    writer = Writer(dynamodb, table, keys=6)
    delivery = {"max_retry_attempts": -1, "backoff_base_seconds": 0.2, "backoff_max_seconds": 1}
    source = {"endpoint_url": lineage_url, **FAST_SMALL_BATCHES}
    worker = start_worker(unique("app"), table, source=source, extra={"delivery": delivery})
    writer.write(6)
    wait(covers(writer, worker.events), 150, "the parent shard's records delivered", worker)
    parent_end = max(int(e["sequenceNumber"]) for e in worker.events())
    moto_lineage.fork_shard(table)
    writer.write(12)
    wait(covers(writer, worker.events), 150, "both children delivering", worker)
    wait(lambda: len(children_of(worker)) == 2, 60, "one child per open shard", worker)

    # The children's sequence numbers start 10**12 apart (moto_lineage.fork_shard).
    def shard(event: dict[str, Any]) -> int:
        sequence = int(event["sequenceNumber"])
        return 0 if sequence <= parent_end else 1 + int(sequence - parent_end > 10**11)

    per_shard = lambda: [sum(1 for e in worker.events() if shard(e) == s) for s in (1, 2)]
    limited = children_of(worker)[0]
    _limit_file_size(limited, worker.events_path.stat().st_size + 64)  # its next append is cut short or refused
    try:
        writing = writer.write_in_background(30, per_second=10)
        wait(lambda: bool(_retries(worker, "recording")), 60, "the limited child's writes failing", worker)
        at_failure = per_shard()
        writing.join()
        wait(
            lambda: max(a - b for a, b in zip(per_shard(), at_failure, strict=True)) >= 3,
            60,
            "the other child's appends",
            worker,
        )
        assert not covers(writer, worker.events)(), "the limited child's records got through"
    finally:
        _limit_file_size(limited, None)
    wait(covers(writer, worker.events), 150, "all delivered once the limit is lifted", worker)
    assert worker.stop() == 0

    raw = worker.events_path.read_bytes()
    assert raw.endswith(b"\n")
    lines = [json.loads(line) for line in raw.decode("utf-8").splitlines()]  # each line whole: no torn line
    order = [shard(e) for e in lines if shard(e)]
    assert sum(1 for a, b in itertools.pairwise(order) if a != b) >= 2, f"the children did not interleave: {order}"
    assert all("cannot write" in r["error"] for r in _retries(worker, "recording"))
    check("two children, one file, one failing", writer, lines, application=worker.application)


# -- item 6: the dead-letter destination ---------------------------------------------------------------------------


def _refuse_the_large(receiver: Receiver) -> None:
    receiver.answer = lambda n, body: (400, {}) if "blob" in body["new"] else (200, {})


def _receive_all(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    received = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            received.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return received


def test_large_dead_letter_through_the_s3_overflow(
    moto: MotoServer, dynamodb: Any, table: str, start_worker: StartWorker, receiver: Receiver
) -> None:
    sqs: Any = boto3.client("sqs", region_name=LOCAL_REGION, endpoint_url=moto.url)
    s3: Any = boto3.client("s3", region_name=LOCAL_REGION, endpoint_url=moto.url)
    queue_url = sqs.create_queue(QueueName=unique("dlq"))["QueueUrl"]
    bucket = unique("overflow")
    s3.create_bucket(Bucket=bucket)
    _refuse_the_large(receiver)
    on_failure = {"type": "sqs", "queue_url": queue_url, "overflow": {"type": "s3", "bucket": bucket}}
    worker = start_worker(unique("app"), table, extra={**webhook(receiver), "on_failure": on_failure})
    writer = Writer(dynamodb, table)
    writer.write(4)
    writer.write(1, blob="x" * BIG)  # refused by the sink, and its entry does not fit a queue message
    writer.write(4)
    wait(lambda: len(receiver.accepted) == 8, 150, "the later records delivered", worker)
    assert worker.stop() == 0

    (pointer,) = _receive_all(sqs, queue_url)
    assert pointer["record"] is None
    ((key,),) = [[x["Key"] for x in s3.list_objects_v2(Bucket=bucket)["Contents"]]]
    assert pointer["overflow"] == {"s3": f"s3://{bucket}/{key}"}
    whole = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert whole["sequenceNumber"] == pointer["sequenceNumber"]
    assert len(whole["record"]["dynamodb"]["NewImage"]["blob"]["S"]) == BIG
    check(
        "large dead letter -> sqs pointer + s3 overflow",
        writer,
        receiver.accepted,
        application=worker.application,
        dead_letters=[whole],
    )


def test_large_dead_letter_without_an_overflow_is_sent_truncated(
    moto: MotoServer, dynamodb: Any, table: str, start_worker: StartWorker, receiver: Receiver
) -> None:
    sqs: Any = boto3.client("sqs", region_name=LOCAL_REGION, endpoint_url=moto.url)
    queue_url = sqs.create_queue(QueueName=unique("dlq"))["QueueUrl"]
    _refuse_the_large(receiver)
    on_failure = {"type": "sqs", "queue_url": queue_url}
    worker = start_worker(unique("app"), table, extra={**webhook(receiver), "on_failure": on_failure})
    writer = Writer(dynamodb, table)
    writer.write(4)
    writer.write(1, blob="x" * BIG)
    writer.write(4)
    wait(lambda: len(receiver.accepted) == 8, 150, "the later records delivered", worker)
    assert worker.stop() == 0

    (truncated,) = _receive_all(sqs, queue_url)
    assert truncated["truncated"] is True
    assert "NewImage" not in truncated["record"]["dynamodb"]
    assert '"level":"error"' in worker.log()  # a person is told the whole record is only in the stream now
    check(
        "large dead letter -> sqs, no overflow: truncated entry (keys + sequence) counted dead-lettered",
        writer,
        receiver.accepted,
        application=worker.application,
        dead_letters=resolve_truncated(writer, [truncated]),
    )


def test_a_destination_that_does_not_exist_is_refused_before_anything_is_read(
    moto: MotoServer, dynamodb: Any, table: str, start_worker: StartWorker, receiver: Receiver
) -> None:
    sqs: Any = boto3.client("sqs", region_name=LOCAL_REGION, endpoint_url=moto.url)
    absent = f"{moto.url}/123456789012/{unique('absent')}"
    writer = Writer(dynamodb, table)
    writer.write(10)
    application, worker_id = unique("app"), unique("worker")
    refused = start_worker(
        application,
        table,
        worker_id=worker_id,
        extra={**webhook(receiver), "on_failure": {"type": "sqs", "queue_url": absent}},
    )
    started = time.monotonic()
    assert refused.process.wait(timeout=60) == 3
    assert time.monotonic() - started < 20
    assert f"on_failure: queue {absent} does not exist" in refused.log()
    assert not _lease_table_exists(dynamodb, application)  # nothing read, nothing checkpointed
    assert receiver.requests == 0

    queue_url = sqs.create_queue(QueueName=unique("dlq"))["QueueUrl"]
    worker = start_worker(
        application,
        table,
        worker_id=worker_id,
        extra={**webhook(receiver), "on_failure": {"type": "sqs", "queue_url": queue_url}},
    )
    writer.write(10)
    wait(covers(writer, lambda: receiver.accepted), 150, "all delivered", worker)
    assert worker.stop() == 0
    check("destination absent: exit 3, then all delivered", writer, receiver.accepted, application=application)


# -- item 11: bisect during an outage --------------------------------------------------------------------------------


def test_bisect_during_an_outage_retries_the_whole_batch(dynamodb: Any, table: str, start_worker: StartWorker) -> None:
    """The file sink on a "full disk" (the child's file size limit) for 5 s, bisect on: a full disk says nothing
    about the records, so the batch is retried whole, with backoff, never split (which would make 2n - 1 writes
    before the first retry). The webhook cannot show this: it stops at the first failed message and reports each
    message's own error, so its batches are never refused as a whole."""
    writer = Writer(dynamodb, table)
    delivery = {
        "bisect_batch_on_error": True,
        "max_retry_attempts": -1,
        "backoff_base_seconds": 0.2,
        "backoff_max_seconds": 1,
    }
    # Reads a second apart: the records written during the outage arrive as one batch.
    source = {"poll_interval_ms": 1000}
    worker = start_worker(unique("app"), table, source=source, extra={"delivery": delivery})
    writer.write(5)
    wait(covers(writer, worker.events), 150, "first records delivered", worker)
    (child,) = children_of(worker)
    _limit_file_size(child, worker.events_path.stat().st_size)  # every append now fails
    outage = 5.0
    try:
        writer.write(20)
        wait(lambda: bool(_retries(worker, "recording")), 60, "the outage seen", worker)
        time.sleep(outage)
    finally:
        _limit_file_size(child, None)
    wait(covers(writer, worker.events), 150, "all delivered after the outage", worker)
    assert worker.stop() == 0

    assert '"bisecting a refused batch"' not in worker.log()
    retries = _retries(worker, "recording")
    batch = retries[0]["pending"]
    assert batch > 1, "the outage met a batch of one record: nothing to split"
    assert {r["pending"] for r in retries} == {batch}  # every retry re-sent the whole batch
    # With backoff from 0.2 s up to 1 s, a 5 s outage takes about ten attempts; splitting alone makes 2n - 1.
    assert len(retries) <= 3 * outage, f"{len(retries)} attempts in a {outage:.0f} s outage"
    check(
        f"bisect on, 5 s full disk: {len(retries)} retries of the whole {batch}-record batch",
        writer,
        worker.events(),
        application=worker.application,
    )


# -- item 12: a configuration that check-config passes runs; one it refuses never starts ---------------------------


def test_refused_configurations_never_start_and_a_fixed_one_delivers(
    dynamodb: Any, table: str, start_worker: StartWorker, receiver: Receiver, tmp_path: Path
) -> None:
    writer = Writer(dynamodb, table)
    writer.write(10)
    application, worker_id = unique("app"), unique("worker")
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate\n", encoding="utf-8")
    refused = {
        "octal metadata address": ({"url": "http://0251.0376.0251.0376/"}, 2, "sinks.0.url"),
        "literal metadata address": ({"url": "http://169.254.169.254/latest/meta-data/"}, 2, "sinks.0.url"),
        "unreadable ca_bundle": ({"url": receiver.url, "ca_bundle": str(bad_ca)}, 3, "sinks.0 (webhook 'hook')"),
    }
    for what, (hook, status, named) in refused.items():
        config = webhook(receiver)
        config["sinks"][0].update(hook)
        worker = start_worker(application, table, worker_id=worker_id, extra=config)
        assert worker.process.wait(timeout=60) == status, f"{what}: {worker.tail()}"
        assert named in worker.log(), f"{what}: {worker.tail()}"
        assert "starting engine" not in worker.log(), what
        checked = _consumer("check-config", "--config", str(worker.directory / "consumer.yaml"))
        assert checked.returncode == 2, f"{what}: check-config passed it: {checked.stdout}"
        assert named in checked.stderr, f"{what}: {checked.stderr}"
        worker.log_path.unlink()  # the next start writes to the same directory
    assert not _lease_table_exists(dynamodb, application)
    assert receiver.requests == 0

    worker = start_worker(application, table, worker_id=worker_id, extra=webhook(receiver))
    writer.write(10)
    wait(covers(writer, lambda: receiver.accepted), 150, "all delivered", worker)
    assert worker.stop() == 0
    check(
        "refused configs exit 2/3 before the JVM, fixed one delivers",
        writer,
        receiver.accepted,
        application=application,
    )
