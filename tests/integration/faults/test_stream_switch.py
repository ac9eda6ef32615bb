"""A table's stream disabled and enabled again (a new stream ARN): the old stream is drained, then the new one is
read from its start, whether the switch happens while the worker runs or while it is stopped.

moto cannot disable a stream without breaking the table; the hook in tests/integration/moto_streams.py makes it
behave as DynamoDB does, in a moto server running in this process.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import moto_streams
import pytest
from harness import Worker, lease_items, unique
from oracle import Writer, check
from support import FAST_SMALL_BATCHES, Receiver, StartWorker, covers, wait, webhook

from consumer.local import LOCAL_REGION, MotoServer, create_streamed_table

pytestmark = [pytest.mark.engine, pytest.mark.faults, pytest.mark.timeout(420)]

SWITCH_EVENT = "stream switch: the old stream is read to its end; reading the next one from its start"
FAST_CHECKS = {**FAST_SMALL_BATCHES, "stream_check_seconds": 2}


@pytest.fixture
def streams_url(moto: MotoServer) -> Iterator[str]:
    """A moto server in this process with the stream re-enable hook; the session's server cannot disable one."""
    del moto  # requested for the credentials and region it puts in the environment
    with moto_streams.serve() as url:
        yield url


def _table(url: str) -> tuple[Any, str, Writer]:
    dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=url)
    table = unique("switch")
    create_streamed_table(dynamodb, table)
    return dynamodb, table, Writer(dynamodb, table)


def _log_lines(worker: Worker) -> list[dict[str, Any]]:
    lines = []
    for text in worker.log().splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and "event" in line:
            lines.append(line)
    return lines


def _http_url(worker: Worker) -> str:
    """The endpoints of the worker's latest run (restarts under one worker id share the log file)."""
    worker.http_url()  # waits for the first run's line
    (*_, line) = (line for line in _log_lines(worker) if line["event"] == "http endpoints")
    return str(line["url"]).replace("//0.0.0.0:", "//127.0.0.1:")


def _switches(worker: Worker) -> list[dict[str, Any]]:
    return [line for line in _log_lines(worker) if line["event"] == SWITCH_EVENT]


def _metric(url: str, name: str) -> float | None:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310 - a local test server
        for line in response.read().decode().splitlines():
            if line.startswith((name + "{", name + " ")):
                return float(line.rsplit(" ", 1)[1])
    return None


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:  # noqa: S310 - a local test server
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return False


def _assert_switched(worker: Worker, old: str, new: str, table: str) -> None:
    (line,) = _switches(worker)
    assert (line["previous_stream_arn"], line["stream_arn"], line["starting_position"]) == (old, new, "TRIM_HORIZON")
    url = _http_url(worker)
    metric = f'dynamodb_consumer_stream_switches_total{{table="{table}"}}'
    wait(lambda: _metric(url, metric) == 1, 10, "the switch counted on /metrics", worker)
    wait(lambda: _ready(url), 120, "ready on the new stream", worker)


def test_stream_reenabled_while_the_worker_runs(streams_url: str, start_worker: StartWorker) -> None:
    """Records on the old stream before it is disabled, and on the new one before the worker notices: all of them,
    the old stream's first."""
    dynamodb, table, writer = _table(streams_url)
    application = unique("app")
    worker = start_worker(application, table, source={"endpoint_url": streams_url, **FAST_CHECKS})
    writer.write(20)
    wait(covers(writer, worker.events), 150, "the first records delivered", worker)
    url = worker.http_url()
    wait(lambda: _ready(url), 60, "ready on the first stream", worker)
    writer.write(15)  # some of these are still unread when the stream is disabled
    old, new = moto_streams.reenable_stream(dynamodb, table)
    writer.write(25)  # on the new stream, before the worker looks again (every 2 s)
    wait(covers(writer, worker.events), 240, "every record of both streams delivered", worker)
    _assert_switched(worker, old, new, table)
    writer.write(5)  # and the worker goes on reading the new stream
    wait(covers(writer, worker.events), 120, "later records delivered", worker)
    assert worker.stop() == 0
    leases = lease_items(dynamodb, application)
    old_shards = {s["ShardId"] for s in _shards(streams_url, old)}
    assert all(leases[shard]["checkpoint"]["S"] == "SHARD_END" for shard in old_shards & set(leases))
    check("stream disabled and re-enabled while running", writer, worker.events(), application=application)


def test_stream_reenabled_while_the_worker_is_stopped(streams_url: str, start_worker: StartWorker) -> None:
    """On restart the old stream's remainder first, then the new stream from its start, never from LATEST."""
    dynamodb, table, writer = _table(streams_url)
    application, worker_id = unique("app"), unique("worker")
    source = {"endpoint_url": streams_url, **FAST_CHECKS}
    first = start_worker(application, table, worker_id=worker_id, source=source)
    writer.write(10)
    wait(covers(writer, first.events), 150, "the first records delivered", first)
    assert first.stop() == 0
    writer.write(10)  # on the old stream, never read
    old, new = moto_streams.reenable_stream(dynamodb, table)
    writer.write(20)  # on the new stream, before any worker runs
    # LATEST as configured: only the plan (draining the old stream, then TRIM_HORIZON) can deliver the new records.
    again = start_worker(application, table, worker_id=worker_id, source=source, starting_position="LATEST")
    wait(covers(writer, again.events), 240, "every record of both streams delivered", again)
    planned = [line for line in _log_lines(again) if str(line["event"]).startswith("the application has not read")]
    assert planned, again.tail()
    assert (planned[-1]["stream_arn"], planned[-1]["table_stream_arn"]) == (old, new)
    switches = [line for line in _switches(again) if line["previous_stream_arn"] == old]
    assert len(switches) == 1
    endpoints = lambda: [line for line in _log_lines(again) if line["event"] == "http endpoints"]
    wait(lambda: len(endpoints()) == 2, 60, "the restarted worker's endpoints", again)
    url = _http_url(again)
    wait(lambda: _ready(url), 120, "ready on the new stream", again)
    assert again.stop() == 0
    # One worker id, one events file: both runs' deliveries.
    check("stream re-enabled while stopped", writer, again.events(), application=application)


def test_sink_down_while_the_old_stream_drains(streams_url: str, start_worker: StartWorker, receiver: Receiver) -> None:
    """The old stream's last batch is retried until the sink is back; the switch waits for it."""
    dynamodb, table, writer = _table(streams_url)
    application = unique("app")
    config = webhook(receiver, max_retry_attempts=-1)
    worker = start_worker(application, table, source={"endpoint_url": streams_url, **FAST_CHECKS}, extra=config)
    writer.write(10)
    wait(covers(writer, lambda: receiver.accepted), 150, "the first records delivered", worker)
    receiver.answer = lambda n, body: (503, {})
    writer.write(10)
    old, new = moto_streams.reenable_stream(dynamodb, table)
    writer.write(10)
    worker.wait_for_log('"event":"delivery retry"', timeout=150)
    worker.wait_for_log("the table has a newer stream", timeout=60)
    url = worker.http_url()
    wait(lambda: not _ready(url), 10, "not ready while the old stream drains", worker)
    # Ten accepted before the sink went down, then one request per attempt at the old stream's next batch.
    wait(lambda: receiver.requests >= 10 + 8, 90, "the old stream's batch retried a while", worker)
    assert not _switches(worker)  # not while the old stream's batch is unsettled
    assert not _ready(url)
    receiver.answer = lambda n, body: (200, {})
    wait(covers(writer, lambda: receiver.accepted), 240, "every record of both streams delivered", worker)
    _assert_switched(worker, old, new, table)
    assert worker.stop() == 0
    check("sink down while the old stream drains", writer, receiver.accepted, application=application)


def _shards(url: str, arn: str) -> list[dict[str, Any]]:
    streams: Any = boto3.client("dynamodbstreams", region_name=LOCAL_REGION, endpoint_url=url)
    shards: list[dict[str, Any]] = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    return shards
