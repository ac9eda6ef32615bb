"""`make faults`: delivery guarantees under failure, on the real engine, each scenario checked by the oracle."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import moto_lineage
import pytest
from harness import Worker, checkpoints, leader, lease_items, unique
from oracle import Writer, check
from support import BATCH, FAST_SMALL_BATCHES, Receiver, StartWorker, child_of, covers, wait, webhook

from consumer.local import LOCAL_REGION, MotoServer, create_streamed_table

pytestmark = [pytest.mark.engine, pytest.mark.faults, pytest.mark.timeout(420)]

# A killed worker's leases reach a survivor within this with the default engine timings (README).
TAKEOVER_BOUND_SECONDS = 45


def _delivered(worker_events: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [event for events in worker_events for event in events]


def test_clean_run_and_graceful_stop(dynamodb: Any, table: str, start_worker: StartWorker) -> None:
    writer = Writer(dynamodb, table)
    worker = start_worker(unique("app"), table, source=FAST_SMALL_BATCHES)
    writer.write(60)
    wait(covers(writer, worker.events), 150, "all delivered", worker)
    assert worker.stop() == 0
    check("clean run + graceful stop", writer, worker.events(), application=worker.application)


def test_sigterm_mid_batch(dynamodb: Any, table: str, start_worker: StartWorker) -> None:
    writer = Writer(dynamodb, table)
    application, worker_id = unique("app"), unique("worker")
    first = start_worker(application, table, worker_id=worker_id, source=FAST_SMALL_BATCHES)
    writing = writer.write_in_background(120, per_second=40)
    wait(lambda: len(first.events()) >= 30, 150, "30 delivered", first)
    stopped = time.monotonic()
    assert first.stop() == 0
    writing.join()
    second = start_worker(application, table, worker_id=worker_id, source=FAST_SMALL_BATCHES)
    wait(covers(writer, second.events), 150, "all delivered", second)
    recovery = time.monotonic() - stopped
    assert second.stop() == 0
    check("SIGTERM mid-batch", writer, second.events(), application=application, recovery_seconds=recovery)


def test_sigterm_while_the_sink_hangs(dynamodb: Any, table: str, start_worker: StartWorker, receiver: Receiver) -> None:
    writer = Writer(dynamodb, table)
    application, worker_id = unique("app"), unique("worker")
    config = webhook(receiver, max_retry_attempts=-1)
    receiver.hang_seconds = 5  # longer than the sink's 2 s timeout: every attempt times out
    worker = start_worker(application, table, worker_id=worker_id, extra=config)
    writer.write(20)
    worker.wait_for_log('"event":"delivery retry"', timeout=150)
    stopped = time.monotonic()
    assert worker.stop(timeout=45) == 0
    assert time.monotonic() - stopped < 20 + 5  # the grace, plus the attempt in flight
    receiver.hang_seconds = 0
    again = start_worker(application, table, worker_id=worker_id, extra=config)
    wait(covers(writer, lambda: receiver.accepted), 150, "all delivered", again)
    assert again.stop() == 0
    check(
        "SIGTERM while the sink hangs",
        writer,
        receiver.accepted,
        application=application,
        recovery_seconds=time.monotonic() - stopped,
        max_duplicates=len(writer.written),
    )


def test_kill_9_of_the_worker_mid_batch(dynamodb: Any, table: str, start_worker: StartWorker) -> None:
    writer = Writer(dynamodb, table)
    application, worker_id = unique("app"), unique("worker")
    first = start_worker(application, table, worker_id=worker_id, source=FAST_SMALL_BATCHES)
    writing = writer.write_in_background(120, per_second=40)
    wait(lambda: len(first.events()) >= 30, 150, "30 delivered", first)
    killed = time.monotonic()
    first.kill()
    writing.join()
    second = start_worker(application, table, worker_id=worker_id, source=FAST_SMALL_BATCHES)
    wait(covers(writer, second.events), 150, "all delivered", second)
    recovery = time.monotonic() - killed
    assert second.stop() == 0
    check(
        "kill -9 worker mid-batch",
        writer,
        second.events(),
        application=application,
        max_duplicates=BATCH,
        recovery_seconds=recovery,
    )


def test_kill_9_of_one_python_child(dynamodb: Any, table: str, start_worker: StartWorker) -> None:
    writer = Writer(dynamodb, table)
    application, worker_id = unique("app"), unique("worker")
    first = start_worker(application, table, worker_id=worker_id, source=FAST_SMALL_BATCHES)
    writer.write(20)
    wait(lambda: len(first.events()) >= 20, 150, "20 delivered", first)
    child = child_of(first)
    killed = time.monotonic()
    os.kill(child, signal.SIGKILL)
    # The multilang daemon notices a dead child when it next hands it records: then the JVM stops, non-zero.
    writer.write(20)
    assert first.process.wait(timeout=90) != 0
    second = start_worker(application, table, worker_id=worker_id, source=FAST_SMALL_BATCHES)
    wait(covers(writer, second.events), 150, "all delivered", second)
    recovery = time.monotonic() - killed
    assert second.stop() == 0
    check(
        "kill -9 of one Python child",
        writer,
        second.events(),
        application=application,
        max_duplicates=BATCH,
        recovery_seconds=recovery,
    )


def test_two_workers_kill_9_of_the_lease_holder(dynamodb: Any, table: str, start_worker: StartWorker) -> None:
    writer = Writer(dynamodb, table)
    application = unique("app")
    workers = {
        w.worker_id: w
        for w in (
            start_worker(application, table, source=FAST_SMALL_BATCHES),
            start_worker(application, table, source=FAST_SMALL_BATCHES),
        )
    }
    writer.write(20)
    every = lambda: _delivered([w.events() for w in workers.values()])
    wait(covers(writer, every), 150, "first records delivered")
    (lease,) = lease_items(dynamodb, application).values()
    holder = workers[lease["leaseOwner"]["S"]]
    (survivor,) = (w for w in workers.values() if w is not holder)
    holder_led = leader(dynamodb, application) == holder.worker_id
    killed = time.monotonic()
    holder.kill()
    writer.write(20)
    # If the holder also led, its leader lock (engine.leader_lock_seconds, 20 s) lapses before leases move.
    wait(covers(writer, every), 120, "takeover", survivor)
    recovery = time.monotonic() - killed
    assert survivor.stop() == 0
    assert recovery <= TAKEOVER_BOUND_SECONDS, f"takeover took {recovery:.1f} s"
    check(
        f"two workers, kill -9 lease holder ({'also' if holder_led else 'not'} the leader)",
        writer,
        every(),
        application=application,
        max_duplicates=BATCH,
        recovery_seconds=recovery,
        streams=[w.events() for w in workers.values()],
    )


def test_sink_down_then_back(dynamodb: Any, table: str, start_worker: StartWorker, receiver: Receiver) -> None:
    writer = Writer(dynamodb, table)
    down_until = time.monotonic() + 1e9
    receiver.answer = lambda n, body: (503, {}) if time.monotonic() < down_until else (200, {})
    worker = start_worker(unique("app"), table, extra=(webhook(receiver, max_retry_attempts=-1)))
    writer.write(30)
    worker.wait_for_log('"event":"delivery retry"', timeout=150)
    time.sleep(3)
    back = time.monotonic()
    down_until = back
    wait(covers(writer, lambda: receiver.accepted), 120, "all delivered", worker)
    recovery = time.monotonic() - back
    assert worker.stop() == 0
    check("sink down then back", writer, receiver.accepted, application=worker.application, recovery_seconds=recovery)


def test_half_503_and_429_with_retry_after(
    dynamodb: Any, table: str, start_worker: StartWorker, receiver: Receiver
) -> None:
    writer = Writer(dynamodb, table)

    def answer(n: int, body: dict[str, Any]) -> tuple[int, dict[str, str]]:
        if n % 5 == 0:
            return 429, {"Retry-After": "1"}
        return (503, {}) if n % 2 else (200, {})

    receiver.answer = answer
    worker = start_worker(unique("app"), table, extra=(webhook(receiver, max_retry_attempts=-1)))
    writer.write(30)
    wait(covers(writer, lambda: receiver.accepted), 180, "all delivered", worker)
    assert worker.stop() == 0
    check("50 % 503 + 429 Retry-After", writer, receiver.accepted, application=worker.application)


def test_permanent_400_goes_to_the_destination(
    dynamodb: Any, table: str, start_worker: StartWorker, receiver: Receiver, tmp_path: Path
) -> None:
    writer = Writer(dynamodb, table)
    receiver.answer = lambda n, body: (400, {}) if body["keys"]["productId"] == "k2" else (200, {})
    dead_letters = tmp_path / "dead-letters.jsonl"
    config = {**(webhook(receiver)), "on_failure": {"type": "file", "path": str(dead_letters)}}
    worker = start_worker(unique("app"), table, extra=config)
    writer.write(25)
    letters = lambda: [json.loads(x) for x in dead_letters.read_text().splitlines()] if dead_letters.exists() else []
    wait(lambda: len(receiver.accepted) == 20 and len(letters()) == 5, 150, "20 delivered, 5 dead-lettered", worker)
    assert worker.stop() == 0
    assert all(x["error"]["class"] == "PermanentDeliveryError" and "400" in x["error"]["message"] for x in letters())
    check(
        "permanent 400 -> destination",
        writer,
        receiver.accepted,
        application=worker.application,
        dead_letters=letters(),
    )


def test_poison_record_with_bisect(dynamodb: Any, table: str, start_worker: StartWorker, tmp_path: Path) -> None:
    writer = Writer(dynamodb, table, keys=3)
    delivered_path = tmp_path / "handled.jsonl"
    handler = tmp_path / "fragile.py"
    handler.write_text(
        "import json\n"
        "def handler(event, context):\n"
        "    if any(r['dynamodb']['NewImage'].get('poison') for r in event['Records']):\n"
        "        raise ValueError('cannot handle this batch')\n"
        f"    with open({str(delivered_path)!r}, 'a') as out:\n"
        "        for r in event['Records']:\n"
        "            out.write(json.dumps(r) + '\\n')\n"
    )
    dead_letters = tmp_path / "dead-letters.jsonl"
    config = {
        "sinks": [{"type": "handler", "name": "fragile", "handler": f"{handler}:handler"}],
        "routes": [{"name": "all", "sinks": ["fragile"], "format": "lambda"}],
        "delivery": {"max_retry_attempts": 1, "backoff_base_seconds": 0.1, "bisect_batch_on_error": True},
        "on_failure": {"type": "file", "path": str(dead_letters)},
    }
    worker = start_worker(unique("app"), table, extra=config)
    writer.write(8)
    writer.write(1, poison="yes")
    writer.write(8)
    handled = lambda: (
        [json.loads(x) for x in delivered_path.read_text().splitlines()] if delivered_path.exists() else []
    )
    letters = lambda: [json.loads(x) for x in dead_letters.read_text().splitlines()] if dead_letters.exists() else []
    wait(lambda: len(handled()) + len(letters()) >= 17, 150, "all settled", worker)
    assert worker.stop() == 0
    assert [x["record"]["dynamodb"]["NewImage"]["poison"] for x in letters()] == [{"S": "yes"}]
    check("poison record + bisect", writer, handled(), application=worker.application, dead_letters=letters())


# Every even version fails the first time the handler sees it. Like a handler that must keep each item's order, it
# stops handling at its first failure: Lambda gives that record and all later ones back, so handling any of them
# now would repeat them and put them behind their own retry.
PARTIAL_HANDLER = """
import json, os

def handler(event, context):
    seen = set(open(REPORTED).read().split()) if os.path.exists(REPORTED) else set()
    failed, ok = [], []
    for record in event["Records"]:
        if int(record["dynamodb"]["NewImage"]["version"]["N"]) % 2 == 0 and record["eventID"] not in seen:
            failed.append(record)
        elif not failed:
            ok.append(record)
    with open(HANDLED, "a") as out:
        out.writelines(json.dumps(record) + "\\n" for record in ok)
    with open(REPORTED, "a") as out:
        out.writelines(record["eventID"] + "\\n" for record in failed)
    return {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in failed]}
"""


def test_handler_batch_item_failures(dynamodb: Any, table: str, start_worker: StartWorker, tmp_path: Path) -> None:
    writer = Writer(dynamodb, table, keys=3)  # 3 keys: a batch of 10 starts with successes before the first failure
    handled, reported = tmp_path / "handled.jsonl", tmp_path / "reported.txt"
    handler = tmp_path / "partial.py"
    handler.write_text(f"HANDLED, REPORTED = {str(handled)!r}, {str(reported)!r}\n" + PARTIAL_HANDLER)
    dead_letters = tmp_path / "dead-letters.jsonl"
    config = {
        "sinks": [
            {
                "type": "handler",
                "name": "partial",
                "handler": f"{handler}:handler",
                "function_response_types": ["ReportBatchItemFailures"],
            }
        ],
        "routes": [{"name": "all", "sinks": ["partial"], "format": "lambda"}],
        "delivery": {"backoff_base_seconds": 0.1, "backoff_max_seconds": 0.5},
        "on_failure": {"type": "file", "path": str(dead_letters)},
    }
    worker = start_worker(unique("app"), table, source=FAST_SMALL_BATCHES, extra=config)
    writer.write(21)

    def records() -> list[dict[str, Any]]:
        return [json.loads(x) for x in handled.read_text().splitlines()] if handled.exists() else []

    wait(covers(writer, lambda: [_as_plain(r) for r in records()]), 150, "all handled", worker)
    assert worker.stop() == 0
    assert not dead_letters.exists()
    reported_ids = reported.read_text().split()
    assert len(reported_ids) == len(set(reported_ids)) == sum(1 for _, v in writer.written if v % 2 == 0)
    assert set(reported_ids) <= {r["eventID"] for r in records()}  # every reported record came back and was handled
    check("handler batchItemFailures", writer, records(), application=worker.application, dead_letters=[])


def _as_plain(record: dict[str, Any]) -> dict[str, Any]:
    """A Lambda-shaped record in the shape _covers reads."""
    image = record["dynamodb"]["NewImage"]
    return {"keys": {"productId": image["productId"]["S"]}, "new": {"version": image["version"]["N"]}}


# How each AWS sink's deliveries reach the SQS queue they are received from.
PATHS = {"sqs": "SQS", "sns": "SNS -> SQS", "eventbridge": "EventBridge -> SQS"}


def _queue(sqs: Any) -> tuple[str, str]:
    url: str = sqs.create_queue(QueueName=unique("q"))["QueueUrl"]
    arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _aws_destination(kind: str, endpoint: str) -> tuple[dict[str, Any], str, Callable[[str], dict[str, Any]]]:
    """A sink of `kind` whose deliveries land in an SQS queue: (sink config, queue URL, SQS body -> payload).

    SNS and EventBridge are read through a queue subscribed to them, so what is counted is what the service
    actually passed on, not what the sink believes it sent.
    """
    url, arn = _queue(boto3.client("sqs", region_name=LOCAL_REGION, endpoint_url=endpoint))
    if kind == "sqs":
        return {"type": "sqs", "name": "queue", "queue_url": url}, url, json.loads
    if kind == "sns":
        sns: Any = boto3.client("sns", region_name=LOCAL_REGION, endpoint_url=endpoint)
        topic: str = sns.create_topic(Name=unique("topic"))["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

        def from_envelope(body: str) -> dict[str, Any]:
            envelope = json.loads(body)
            assert envelope["TopicArn"] == topic
            payload: dict[str, Any] = json.loads(envelope["Message"])
            return payload

        return {"type": "sns", "name": "topic", "topic_arn": topic}, url, from_envelope
    events: Any = boto3.client("events", region_name=LOCAL_REGION, endpoint_url=endpoint)
    bus, rule, source = unique("bus"), unique("rule"), unique("consumer.faults")
    events.create_event_bus(Name=bus)
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])

    def from_event(body: str) -> dict[str, Any]:
        event = json.loads(body)
        assert event["source"] == source
        detail: dict[str, Any] = event["detail"]
        return detail

    return {"type": "eventbridge", "name": "bus", "event_bus_name": bus, "source": source}, url, from_event


@pytest.mark.parametrize("kind", list(PATHS))
def test_oversize_record(dynamodb: Any, table: str, start_worker: StartWorker, tmp_path: Path, kind: str) -> None:
    endpoint = dynamodb.meta.endpoint_url  # the session's moto server
    sink, queue, payload_of = _aws_destination(kind, endpoint)
    sqs: Any = boto3.client("sqs", region_name=LOCAL_REGION, endpoint_url=endpoint)
    writer = Writer(dynamodb, table)
    dead_letters = tmp_path / "dead-letters.jsonl"
    config = {"sinks": [sink], "on_failure": {"type": "file", "path": str(dead_letters)}}
    worker = start_worker(unique("app"), table, extra=config)
    writer.write(4)
    writer.write(1, blob="x" * 300_000)  # a legal 300 KB item, over the 256 KiB message limit of all three
    writer.write(4)
    received: list[dict[str, Any]] = []

    def drained() -> bool:
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            received.append(payload_of(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return len(received) >= 8 and dead_letters.exists()

    wait(drained, 150, "8 delivered and the oversize record dead-lettered", worker)
    assert worker.stop() == 0
    letters = [json.loads(x) for x in dead_letters.read_text().splitlines()]
    assert [x["sink"] for x in letters] == [sink["name"]]
    assert "oversize" in letters[0]["error"]["message"]
    assert len(letters[0]["record"]["dynamodb"]["NewImage"]["blob"]["S"]) == 300_000  # the full record
    check(f"oversize record -> {PATHS[kind]}", writer, received, application=worker.application, dead_letters=letters)


def test_maximum_record_age_exceeded(
    dynamodb: Any, table: str, start_worker: StartWorker, receiver: Receiver, tmp_path: Path
) -> None:
    writer = Writer(dynamodb, table)
    down = {"now": True}
    receiver.answer = lambda n, body: (503, {}) if down["now"] else (200, {})
    dead_letters = tmp_path / "dead-letters.jsonl"
    config = {
        **(webhook(receiver, max_retry_attempts=-1, max_record_age_seconds=3)),
        "on_failure": {"type": "file", "path": str(dead_letters)},
    }
    worker = start_worker(unique("app"), table, extra=config)
    writer.write(10)
    letters = lambda: [json.loads(x) for x in dead_letters.read_text().splitlines()] if dead_letters.exists() else []
    wait(lambda: len(letters()) == 10, 150, "the aged records dead-lettered", worker)
    down["now"] = False
    writer.write(10)
    wait(lambda: len(receiver.accepted) == 10, 150, "fresh records delivered", worker)
    assert worker.stop() == 0
    assert all(x["error"]["class"] == "RecordTooOldError" for x in letters())
    check(
        "maximum record age exceeded",
        writer,
        receiver.accepted,
        application=worker.application,
        dead_letters=letters(),
    )


def test_shard_end_parent_before_child(lineage_url: str, start_worker: StartWorker) -> None:
    dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=lineage_url)
    table = unique("lineage")
    create_streamed_table(dynamodb, table)
    writer = Writer(dynamodb, table)
    application = unique("app")
    worker = start_worker(application, table, source={"endpoint_url": lineage_url, **FAST_SMALL_BATCHES})
    writer.write(15)
    # Split once the parent's lease is held and being read, with part of it still unread: the child's records
    # are there before the parent is finished.
    wait(lambda: len(worker.events()) >= 1, 150, "first records delivered", worker)
    split = time.monotonic()
    parent, child = moto_lineage.split_shard(table)
    writer.write(15)
    wait(covers(writer, worker.events), 150, "all delivered", worker)
    recovery = time.monotonic() - split
    assert worker.stop() == 0
    leases = lease_items(dynamodb, application)
    assert leases[parent]["checkpoint"]["S"] == "SHARD_END"
    assert leases[child]["checkpoint"]["S"] == worker.events()[-1]["sequenceNumber"]
    check(
        "shard end, parent before child",
        writer,
        worker.events(),
        application=application,
        recovery_seconds=recovery,
    )


def test_sigterm_at_shard_end_while_the_sink_is_down(
    lineage_url: str, start_worker: StartWorker, receiver: Receiver
) -> None:
    """A closed shard's last batch is being retried when SIGTERM arrives: the child gives the batch up, and must
    then not write SHARD_END (which would hand the shard to its children and skip the batch for good)."""
    dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=lineage_url)
    table = unique("lineage")
    create_streamed_table(dynamodb, table)
    writer = Writer(dynamodb, table)
    writer.write(6)
    parent, child = moto_lineage.split_shard(table)  # the parent is closed: its one read is at the shard's end
    writer.write(4)
    down = {"now": True}
    receiver.answer = lambda n, body: (503, {}) if down["now"] else (200, {})
    application, worker_id = unique("app"), unique("worker")
    config = webhook(receiver, max_retry_attempts=-1)
    source = {"endpoint_url": lineage_url, **FAST_SMALL_BATCHES}
    worker = start_worker(application, table, worker_id=worker_id, source=source, extra=config)
    worker.wait_for_log('"event":"delivery retry"', timeout=150)
    stopped = time.monotonic()
    assert worker.stop(timeout=45) == 0
    assert time.monotonic() - stopped < 20 + 5  # within the grace
    assert lease_items(dynamodb, application)[parent]["checkpoint"]["S"] != "SHARD_END"
    down["now"] = False
    again = start_worker(application, table, worker_id=worker_id, source=source, extra=config)
    wait(covers(writer, lambda: receiver.accepted), 150, "all delivered", again)
    recovery = time.monotonic() - stopped
    assert again.stop() == 0
    assert lease_items(dynamodb, application)[parent]["checkpoint"]["S"] == "SHARD_END"
    assert child in lease_items(dynamodb, application)
    check(
        "SIGTERM at shard end, sink down",
        writer,
        receiver.accepted,
        application=application,
        recovery_seconds=recovery,
    )


def test_idle_graceful_stop_with_a_short_grace(dynamodb: Any, table: str, start_worker: StartWorker) -> None:
    """An idle worker stops well within a 5 s grace, with exit status 0, and says how much of the grace it used."""
    writer = Writer(dynamodb, table)
    application, worker_id = unique("app"), unique("worker")
    worker = start_worker(application, table, worker_id=worker_id, extra={"shutdown_grace_seconds": 5})
    writer.write(10)
    wait(covers(writer, worker.events), 150, "all delivered", worker)
    time.sleep(2)  # idle: nothing in flight
    stopped = time.monotonic()
    assert worker.stop(timeout=30) == 0, worker.tail()
    took = time.monotonic() - stopped
    assert took <= 5, f"an idle stop took {took:.1f} s"
    assert "of the 5000 ms grace" in worker.log()
    writer.write(5)
    again = start_worker(application, table, worker_id=worker_id, extra={"shutdown_grace_seconds": 5})
    wait(covers(writer, again.events), 150, "all delivered after the restart", again)
    assert again.stop(timeout=30) == 0
    check(
        "idle stop, 5 s grace",
        writer,
        worker.events(),
        application=application,
        recovery_seconds=took,
    )


def test_dry_run_leaves_the_real_positions_alone(dynamodb: Any, table: str, start_worker: StartWorker) -> None:
    """A dry run under the production application name must not move its checkpoints past what it only logged."""
    writer = Writer(dynamodb, table)
    application, worker_id = unique("app"), unique("worker")
    first = start_worker(application, table, worker_id=worker_id)
    writer.write(10)
    wait(covers(writer, first.events), 150, "first records delivered", first)
    assert first.stop() == 0
    before = lease_items(dynamodb, application)
    writer.write(10)
    dry = start_worker(application, table, args=("--dry-run",))
    wait(lambda: dry.log().count('"event":"would send"') >= 2 * 20, 150, "the dry run read everything", dry)
    assert dry.stop() == 0
    assert not dry.events()  # the file sink received nothing
    assert lease_items(dynamodb, application) == before
    left = [name for name in dynamodb.list_tables()["TableNames"] if name.startswith(f"{application}-dryrun-")]
    assert left == [], f"the dry run's tables were not deleted: {left}"
    again = start_worker(application, table, worker_id=worker_id)
    wait(covers(writer, again.events), 150, "all delivered by the real run", again)
    assert again.stop() == 0
    check("dry run, then the real run", writer, again.events(), application=application)


def test_lease_table_deleted_while_stopped(dynamodb: Any, table: str, start_worker: StartWorker) -> None:
    """With its lease table gone, an application that ran before must not start at a default position."""
    writer = Writer(dynamodb, table)
    application, worker_id = unique("app"), unique("worker")
    first = start_worker(application, table, worker_id=worker_id, starting_position="LATEST")
    first.wait_for_log('"event":"shard started"', timeout=150)
    writer.write(10)
    wait(covers(writer, first.events), 150, "first records delivered", first)
    assert first.stop() == 0
    writer.write(10)  # written while the service is down
    dynamodb.delete_table(TableName=application)
    refused = start_worker(application, table, worker_id=worker_id, starting_position="LATEST")
    assert refused.process.wait(timeout=60) == 3
    assert "positions are lost" in refused.log()
    assert "--starting-position" in refused.log()
    chosen = start_worker(
        application,
        table,
        worker_id=worker_id,
        starting_position="LATEST",
        args=("--starting-position", "TRIM_HORIZON"),
    )
    wait(covers(writer, chosen.events), 150, "all delivered from TRIM_HORIZON", chosen)
    assert chosen.stop() == 0
    check(
        "lease table deleted while stopped",
        writer,
        chosen.events(),
        application=application,
        max_duplicates=10,  # the first ten again: TRIM_HORIZON is the operator's choice
    )


def _ready(worker: Worker) -> bool:
    try:
        with urllib.request.urlopen(worker.http_url() + "/readyz", timeout=2) as response:  # noqa: S310 - http://127.0.0.1
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_latest_writes_right_after_readiness_are_delivered(
    dynamodb: Any, table: str, start_worker: StartWorker
) -> None:
    """A new application at LATEST: /readyz answers 200 only once every shard's position is fixed, so a write
    made right after readiness is delivered (a deploy that waits for readiness and then writes expects that)."""
    writer = Writer(dynamodb, table)
    application = unique("app")
    worker = start_worker(application, table, starting_position="LATEST")
    ready_after = wait(lambda: _ready(worker), 150, "/readyz 200", worker)
    writer.write(10)
    wait(covers(writer, worker.events), 150, "all delivered", worker)
    assert worker.stop() == 0
    check(
        "LATEST: writes right after readiness",
        writer,
        worker.events(),
        application=application,
        recovery_seconds=ready_after,
    )


def test_latest_positions_survive_a_restart_before_the_first_write(lineage_url: str, start_worker: StartWorker) -> None:
    """A new application at LATEST is stopped before anything is written, and records are written while it is down:
    the restart delivers them. The position LATEST resolved to is written into each lease when the shard is taken,
    so a restart (or another worker) starts there, not at a new LATEST. Two shards: one holding records from before
    the first start (which LATEST skips, and which must stay skipped), one holding none."""
    dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=lineage_url)
    table = unique("latest")
    create_streamed_table(dynamodb, table)
    # Keys that the forked stream sends to its first child only: the second child starts empty.
    earlier = [key for key in (f"earlier-{n}" for n in range(64)) if zlib.crc32(key.encode()) % 2 == 0][:6]
    for key in earlier[:3]:
        dynamodb.put_item(TableName=table, Item={"productId": {"S": key}, "version": {"N": "1"}})
    moto_lineage.fork_shard(table)
    for key in earlier[3:]:
        dynamodb.put_item(TableName=table, Item={"productId": {"S": key}, "version": {"N": "1"}})
    application = unique("app")
    source = {"endpoint_url": lineage_url, **FAST_SMALL_BATCHES}

    first = start_worker(application, table, starting_position="LATEST", source=source)
    wait(lambda: _ready(first), 150, "/readyz 200", first)
    assert first.stop() == 0
    positions = checkpoints(dynamodb, application)
    assert len(positions) == 2, positions
    assert "LATEST" not in positions.values(), positions

    writer = Writer(dynamodb, table, keys=8)
    writer.write(20)  # no worker runs
    stopped_writes_done = time.monotonic()
    second = start_worker(application, table, starting_position="LATEST", source=source)
    wait(covers(writer, second.events), 150, "the writes made while stopped delivered", second)
    recovery = time.monotonic() - stopped_writes_done
    writer.write(10)
    wait(covers(writer, second.events), 150, "all delivered", second)
    assert second.stop() == 0
    delivered = first.events() + second.events()
    assert not [e for e in delivered if str(e.get("keys", {}).get("productId", "")).startswith("earlier-")], (
        "records from before the first start at LATEST were delivered"
    )
    check(
        "LATEST: restart before the first write, two shards",
        writer,
        delivered,
        application=application,
        recovery_seconds=recovery,
    )


def test_not_ready_while_an_open_shard_has_no_lease(lineage_url: str, start_worker: StartWorker) -> None:
    """A worker joining a running application skips the engine's start-up shard sync when the lease table is not
    empty; if the worker that synced died half-way, an open shard has no lease until the next periodic sync (minutes),
    and a write to it made now would be read from wherever that lease will start. /readyz must not answer 200 then.
    Readiness only: nothing is written, so there is nothing for the oracle to judge."""
    dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=lineage_url)
    table = unique("unleased")
    create_streamed_table(dynamodb, table)
    dynamodb.put_item(TableName=table, Item={"productId": {"S": "seed"}, "version": {"N": "1"}})
    _, children = moto_lineage.fork_shard(table)
    application = unique("app")
    source = {"endpoint_url": lineage_url, **FAST_SMALL_BATCHES}
    first = start_worker(application, table, starting_position="LATEST", source=source)
    wait(lambda: _ready(first), 150, "/readyz 200", first)
    assert first.stop() == 0
    # As if the worker that ran the first shard sync had died after creating one child's lease only.
    dynamodb.delete_item(TableName=application, Key={"leaseKey": {"S": children[1]}})

    second = start_worker(application, table, starting_position="LATEST", source=source)
    second.http_url()
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        assert not _ready(second), "ready while an open shard has no lease"
        time.sleep(1)
    assert second.process.poll() is None, second.tail()
    assert set(checkpoints(dynamodb, application)) == {children[0]}
    assert second.stop() == 0


def test_latest_worker_killed_and_replaced_under_a_new_worker_id(
    dynamodb: Any, table: str, start_worker: StartWorker
) -> None:
    """A new application at LATEST is killed (kill -9) once ready, before anything is written; its lease still names
    the dead worker when a replacement with a new worker id starts. What was written while none ran, and what is
    written once the replacement reports ready, are delivered."""
    writer = Writer(dynamodb, table)
    application = unique("app")
    first = start_worker(application, table, starting_position="LATEST")
    wait(lambda: _ready(first), 150, "/readyz 200", first)
    first.kill()
    writer.write(10)
    second = start_worker(application, table, starting_position="LATEST")
    started = time.monotonic()
    wait(lambda: _ready(second), 150, "/readyz 200 on the replacement", second)
    writer.write(10)
    wait(covers(writer, second.events), 150, "all delivered", second)
    recovery = time.monotonic() - started
    assert second.stop() == 0
    check(
        "LATEST: killed, replaced under a new worker id",
        writer,
        first.events() + second.events(),
        application=application,
        recovery_seconds=recovery,
    )


def _forked_table(lineage_url: str) -> tuple[Any, str, Writer, list[str]]:
    """A table on the in-process moto server whose stream has two open shards (children of a closed parent)."""
    dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=lineage_url)
    table = unique("forked")
    create_streamed_table(dynamodb, table)
    writer = Writer(dynamodb, table, keys=8)
    writer.write(4)
    _, children = moto_lineage.fork_shard(table)
    return dynamodb, table, writer, children


def test_get_records_throttled_for_a_while(lineage_url: str, start_worker: StartWorker) -> None:
    """GetRecords answers LimitExceededException (too many readers on the shards) for 20 s: the worker backs off,
    stays up, and delivers everything once the throttling stops; two shards are read throughout."""
    _, table, writer, _ = _forked_table(lineage_url)
    application = unique("app")
    worker = start_worker(application, table, source={"endpoint_url": lineage_url, **FAST_SMALL_BATCHES})
    writer.write(20)
    wait(covers(writer, worker.events), 150, "first records delivered", worker)
    moto_lineage.throttle_get_records(20)
    throttled = time.monotonic()
    try:
        writer.write(30, per_second=5)
    finally:
        moto_lineage.throttle_get_records(0)
    assert worker.process.poll() is None, "the worker stopped under throttling\n" + worker.tail()
    wait(covers(writer, worker.events), 150, "all delivered after the throttling", worker)
    recovery = time.monotonic() - throttled
    assert worker.stop() == 0
    check(
        "GetRecords throttled 20 s, two shards",
        writer,
        worker.events(),
        application=application,
        recovery_seconds=recovery,
    )


def test_rolling_restart_of_two_workers(lineage_url: str, start_worker: StartWorker) -> None:
    """Two workers share two shards; each is stopped (SIGTERM) and started again in turn, as a rolling deploy does,
    while writes go on."""
    dynamodb, table, writer, _ = _forked_table(lineage_url)
    application = unique("app")
    source = {"endpoint_url": lineage_url, **FAST_SMALL_BATCHES}
    ids = [unique("worker"), unique("worker")]
    workers = {worker_id: start_worker(application, table, worker_id=worker_id, source=source) for worker_id in ids}
    writing = writer.write_in_background(120, per_second=4)
    every = lambda: _delivered([w.events() for w in workers.values()])
    wait(lambda: len(every()) >= 20, 150, "first records delivered")
    started = time.monotonic()
    for worker_id in ids:
        assert workers[worker_id].stop() == 0, workers[worker_id].tail()
        workers[worker_id] = start_worker(application, table, worker_id=worker_id, source=source)
        workers[worker_id].wait_for_log('"event":"http endpoints"', timeout=60)
        time.sleep(10)  # let the restarted worker take leases back before the next one goes
    writing.join()
    wait(covers(writer, every), 180, "all delivered after the rolling restart")
    recovery = time.monotonic() - started
    for worker in workers.values():
        assert worker.stop() == 0
    owners = {item.get("leaseOwner", {}).get("S") for item in lease_items(dynamodb, application).values()}
    check(
        f"rolling restart of two workers, two shards ({len(owners - {None})} owners at the end)",
        writer,
        every(),
        application=application,
        max_duplicates=2 * 2 * BATCH,  # a lease handed over may repeat up to one batch, per shard and restart
        recovery_seconds=recovery,
        streams=[w.events() for w in workers.values()],
    )


@pytest.fixture
def own_moto(tmp_path: Path) -> Iterator[MotoServer]:
    """A moto server of this scenario's own, so that pausing it leaves the session's server alone."""
    server = MotoServer(log_path=tmp_path / "own-moto.log").start()
    yield server
    if server._process is not None:
        os.kill(server._process.pid, signal.SIGCONT)  # never leave a stopped process behind
    server.stop()


def test_dynamodb_endpoint_paused_for_30_s(own_moto: MotoServer, start_worker: StartWorker) -> None:
    """The endpoint (streams, the table, the lease table) stops answering for 30 s mid-stream: reads, checkpoints and
    lease renewals all hang or fail. Whatever the worker does meanwhile (a child may exit on a checkpoint it could not
    write, which stops the worker as a crash does), after a restart by the orchestrator nothing is lost."""
    assert own_moto._process is not None
    dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=own_moto.url)
    table = unique("paused")
    create_streamed_table(dynamodb, table)
    writer = Writer(dynamodb, table)
    application, worker_id = unique("app"), unique("worker")
    source = {"endpoint_url": own_moto.url, **FAST_SMALL_BATCHES}
    worker = start_worker(application, table, worker_id=worker_id, source=source)
    writing = writer.write_in_background(60, per_second=10)
    wait(lambda: len(worker.events()) >= 10, 150, "first records delivered", worker)
    os.kill(own_moto._process.pid, signal.SIGSTOP)
    paused = time.monotonic()
    time.sleep(30)
    os.kill(own_moto._process.pid, signal.SIGCONT)
    writing.join()
    restarts = 0
    deadline = time.monotonic() + 180
    while not covers(writer, worker.events)() and time.monotonic() < deadline:
        if worker.process.poll() is not None:  # the orchestrator's part: start it again
            restarts += 1
            worker = start_worker(application, table, worker_id=worker_id, source=source)
        time.sleep(0.5)
    wait(covers(writer, worker.events), 5, "all delivered after the pause", worker)
    recovery = time.monotonic() - paused - 30
    assert worker.stop() == 0
    assert restarts <= 1, f"{restarts} restarts: a crash loop"
    check(
        f"DynamoDB endpoint paused 30 s ({restarts} restart)",
        writer,
        worker.events(),
        application=application,
        max_duplicates=BATCH,
        recovery_seconds=recovery,
    )
