"""Metrics, health endpoints, one JSON log stream, redaction and `consumer status`, on the real engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Worker, checkpoints, put_product, unique
from prometheus_client.parser import text_string_to_metric_families

from consumer.local import LOCAL_REGION, MotoServer

pytestmark = [pytest.mark.engine, pytest.mark.timeout(300)]

StartWorker = Callable[..., Worker]
SECRET = "hunter2-only-in-the-item"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a loopback URL of the test's own
            return int(response.status), response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode("utf-8")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _wait(condition: Callable[[], bool], timeout: float, what: str, worker: Worker) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert worker.process.poll() is None, f"worker exited while waiting for {what}:\n{worker.tail()}"
        assert time.monotonic() < deadline, f"{what} not seen within {timeout:.0f} s\n{worker.tail()}"
        time.sleep(0.25)


def _jvm_of(worker: Worker) -> int:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == worker.process.pid and "java" in (stat.parent / "cmdline").read_bytes().decode(
            errors="replace"
        ):
            return int(stat.parent.name)
    pytest.fail(f"no JVM under worker {worker.worker_id}")


def test_metrics_count_what_was_written_delivered_and_filtered(
    dynamodb: Any, table: str, start_worker: StartWorker
) -> None:
    application = unique("app")
    extra = {
        # Only inserts reach the recording sink; modifications and removals match no route and are dropped.
        "routes": [{"name": "inserts", "filter": {"where": [{"eventName": ["INSERT"]}]}, "sinks": ["recording"]}],
        "log_redact": ["secret"],
    }
    worker = start_worker(application, table, extra=extra)
    url = worker.http_url()
    status, body = _get(f"{url}/readyz")
    # A new application waits 1-30 s before its first lease sync: the scheduler cannot have started yet.
    assert status == 503, body
    assert json.loads(body)["status"] == "not ready"
    assert _get(f"{url}/healthz")[0] == 200

    for product in ("p1", "p2", "p3"):
        put_product(dynamodb, table, product, name=f"{product} name", price=1)
    dynamodb.update_item(
        TableName=table,
        Key={"productId": {"S": "p1"}},
        UpdateExpression="SET price = :p, secret = :s",
        ExpressionAttributeValues={":p": {"N": "2"}, ":s": {"S": SECRET}},
    )
    dynamodb.delete_item(TableName=table, Key={"productId": {"S": "p2"}})
    worker.wait_for(lambda events: len(events) >= 3)
    _wait(lambda: _get(f"{url}/readyz")[0] == 200, 60, "ready", worker)

    def counted() -> bool:
        samples = _samples(_get(f"{url}/metrics")[1])
        received = sum(
            _value(samples, "dynamodb_consumer_records_received_total", table=table, event_name=name)
            for name in ("INSERT", "MODIFY", "REMOVE")
        )
        return (
            received == 5
            and _value(samples, "dynamodb_consumer_checkpoints_total", table=table, outcome="written") >= 1
        )

    _wait(counted, 60, "five records counted", worker)
    samples = _samples(_get(f"{url}/metrics")[1])
    t = {"table": table}
    assert _value(samples, "dynamodb_consumer_records_received_total", **t, event_name="INSERT") == 3
    assert _value(samples, "dynamodb_consumer_records_received_total", **t, event_name="MODIFY") == 1
    assert _value(samples, "dynamodb_consumer_records_received_total", **t, event_name="REMOVE") == 1
    assert _value(samples, "dynamodb_consumer_records_filtered_total", **t, event_name="MODIFY") == 1
    assert _value(samples, "dynamodb_consumer_records_filtered_total", **t, event_name="REMOVE") == 1
    assert _value(samples, "dynamodb_consumer_records_filtered_total", **t, event_name="INSERT") == 0
    delivered = {"sink": "recording", "event_name": "INSERT", "outcome": "delivered"}
    assert _value(samples, "dynamodb_consumer_deliveries_total", **t, **delivered) == 3
    assert len(worker.events()) == 3
    assert _value(samples, "dynamodb_consumer_lag_seconds_count", **t) == 5
    assert _value(samples, "dynamodb_consumer_batch_size_records_sum", **t) == 5
    assert _value(samples, "dynamodb_consumer_sink_request_duration_seconds_count", **t, sink="recording") >= 1
    assert _value(samples, "dynamodb_consumer_leases_held", **t) == 1
    assert _value(samples, "dynamodb_consumer_child_starts_total", **t) == 1
    assert _value(samples, "dynamodb_consumer_child_crashes_total", **t) == 0
    assert _value(samples, "dynamodb_consumer_engine_up") == 1
    assert _value(samples, "dynamodb_consumer_ready") == 1
    assert ("dynamodb_consumer_max_lag_seconds", (("table", table),)) in samples
    assert ("dynamodb_consumer_behind_latest_seconds", (("table", table),)) in samples
    assert not any("shard" in name or "sequence" in name for name, labels in samples for name, _ in labels)

    def caught_up() -> bool:
        idle = _samples(_get(f"{url}/metrics")[1])
        lag = _value(idle, "dynamodb_consumer_max_lag_seconds", **t)
        return lag == 0 and _value(idle, "dynamodb_consumer_behind_latest_seconds", **t) == 0

    # Idle polls reach the child too: once nothing is left to read, the lag gauges say so.
    _wait(caught_up, 30, "lag gauges at 0 on an idle stream", worker)

    assert worker.stop() == 0
    _assert_one_json_stream_without(worker.log(), SECRET)
    _assert_status_lists_the_checkpoint(dynamodb, application, worker)


def _assert_one_json_stream_without(log: str, secret: str) -> None:
    # One stream of JSON lines: the supervisor's, the children's and the JVM's alike.
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert {line.get("source") for line in lines} >= {"kcl", None}
    assert all({"event", "level", "timestamp"} <= line.keys() for line in lines)
    # The redacted attribute never appears in the log stream, though the record carrying it was processed.
    assert secret not in log


def _assert_status_lists_the_checkpoint(dynamodb: Any, application: str, worker: Worker) -> None:
    config_path = worker.directory / "consumer.yaml"
    command = [sys.executable, "-m", "consumer", "status", "--config", str(config_path)]
    result = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    ((shard_id, checkpoint),) = checkpoints(dynamodb, application).items()
    (shard,) = json.loads(result.stdout)["shards"]
    assert shard["shard_id"] == shard_id
    assert shard["checkpoint"] == checkpoint
    assert shard["owner"] == worker.worker_id
    assert shard["lag_seconds"] == 0.0  # everything written was processed
    table_output = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False).stdout
    assert shard_id in table_output
    assert checkpoint in table_output


def test_a_logged_image_keeps_redacted_attributes_out_of_every_line(
    dynamodb: Any, table: str, start_worker: StartWorker
) -> None:
    extra = {
        "log_redact": ["Secret"],  # matched in any case
        "sinks": [{"type": "log", "name": "log", "fields": ["name", "secret"]}],
    }
    worker = start_worker(unique("app"), table, extra=extra)
    put_product(dynamodb, table, "p1", name="visible name", price=3, secret=SECRET)
    worker.wait_for_log('"event":"change"', timeout=150)
    assert worker.stop() == 0
    log = worker.log()
    assert "visible name" in log  # the image was logged
    assert '"secret":"[redacted]"' in log
    assert SECRET not in log


class _SlowReceiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Slow)
        self.release = threading.Event()


class _Slow(BaseHTTPRequestHandler):
    server: _SlowReceiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.release.wait(60)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return None


@pytest.fixture
def slow_receiver() -> Iterator[_SlowReceiver]:
    server = _SlowReceiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def test_healthz_fails_for_a_stuck_child_and_recovers(
    dynamodb: Any, table: str, start_worker: StartWorker, slow_receiver: _SlowReceiver
) -> None:
    port = slow_receiver.server_address[1]
    extra = {
        "sinks": [{"type": "webhook", "name": "hook", "url": f"http://127.0.0.1:{port}/", "timeout_seconds": 60}],
        "http": {"port": 0, "stuck_batch_seconds": 3},
    }
    worker = start_worker(unique("app"), table, extra=extra)
    url = worker.http_url()
    put_product(dynamodb, table, "p1", price=1)

    def stuck() -> bool:
        status, body = _get(f"{url}/healthz")
        return status == 503 and bool(json.loads(body)["stuck"])

    _wait(stuck, 150, "a stuck child on /healthz", worker)
    slow_receiver.release.set()
    _wait(lambda: _get(f"{url}/healthz")[0] == 200, 30, "healthy again", worker)
    assert worker.stop() == 0


def test_healthz_fails_when_the_engine_hangs_and_the_worker_exits_when_it_is_killed(
    dynamodb: Any, table: str, start_worker: StartWorker
) -> None:
    worker = start_worker(unique("app"), table, extra={"http": {"port": 0, "engine_unresponsive_seconds": 3}})
    url = worker.http_url()
    put_product(dynamodb, table, "p1", price=1)
    worker.wait_for(lambda events: len(events) == 1, timeout=150)
    assert _get(f"{url}/healthz")[0] == 200
    jvm = _jvm_of(worker)

    os.kill(jvm, signal.SIGSTOP)  # a hung JVM: the process exists but no longer answers
    try:
        _wait(lambda: _get(f"{url}/healthz")[0] == 503, 30, "unhealthy while the JVM is stopped", worker)
        assert json.loads(_get(f"{url}/healthz")[1])["engine"] == "unresponsive"
    finally:
        os.kill(jvm, signal.SIGCONT)
    _wait(lambda: _get(f"{url}/healthz")[0] == 200, 30, "healthy again", worker)

    os.kill(jvm, signal.SIGKILL)
    # The supervisor follows its engine out with a failure status, for the orchestrator to restart it.
    assert worker.process.wait(timeout=30) != 0
    with pytest.raises(urllib.error.URLError, match="refused"):
        _get(f"{url}/healthz")


def test_status_without_a_lease_table_says_the_application_has_not_run(
    moto: MotoServer, table: str, tmp_path: Path
) -> None:
    config = {
        "application_name": unique("never-ran"),
        "source": {"table_name": table, "region": LOCAL_REGION, "endpoint_url": moto.url},
        "sinks": [{"type": "log"}],
    }
    path = tmp_path / "consumer.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "status", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    assert "has not run yet" in result.stderr
