"""Metrics from the pipeline, child bookkeeping, the health endpoints, log redaction and the status report."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry
from samples import STREAM_ARN

from consumer.decode import decode_record
from consumer.delivery import Pipeline, RetryPolicy
from consumer.errors import PermanentDeliveryError, ThrottledError
from consumer.events import ChangeEvent, StreamContext
from consumer.formats import JSON
from consumer.health import ChildState, ChildWatch
from consumer.logs import REDACTED, Redactor, configure_logging
from consumer.metrics import ProcessorMetrics
from consumer.router import Route, Router
from consumer.server import HealthServer, HealthState
from consumer.sinks import Failure, Message
from consumer.sinks.log import DryRunSink
from consumer.status import Status, _shard

CONTEXT = StreamContext(stream_arn=STREAM_ARN, region="us-east-1")
TABLE = CONTEXT.table


def _event(sequence: str, name: str = "INSERT", key: str = "p1") -> ChangeEvent:
    record = {
        "eventID": f"id-{sequence}",
        "eventName": name,
        "dynamodb": {
            "ApproximateCreationDateTime": 1732800000000,
            "Keys": {"productId": {"S": key}},
            "NewImage": {"productId": {"S": key}, "email": {"S": "a@example.com"}},
            "SequenceNumber": sequence,
            "SizeBytes": 10,
        },
    }
    return decode_record(json.dumps(record).encode(), CONTEXT)


class _Scripted:
    """Answers each send with the next scripted outcome: an exception, or the positions that fail."""

    def __init__(self, *outcomes: Exception | Sequence[int]) -> None:
        self.name = "hook"
        self._outcomes = list(outcomes)

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        outcome = self._outcomes.pop(0) if self._outcomes else ()
        if isinstance(outcome, Exception):
            raise outcome
        return [Failure(batch[i], ThrottledError("slow down")) for i in outcome]

    def close(self) -> None:
        return None


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def _pipeline(sink: _Scripted, registry: CollectorRegistry, dead: list[Any] | None = None) -> Pipeline:
    inserts = Route(
        "inserts", ("hook",), lambda e: json.dumps(e.event_id), JSON, lambda e: e.event_name.value == "INSERT"
    )
    return Pipeline(
        Router([inserts], None),
        [sink],
        RetryPolicy(max_attempts=3, base_delay_seconds=0),
        sleep=lambda _: None,
        metrics=ProcessorMetrics(registry, TABLE),
        dead_letters=dead.extend if dead is not None else None,
    )


def test_pipeline_counts_deliveries_filtering_retries_and_throttling() -> None:
    registry = CollectorRegistry()
    pipeline = _pipeline(_Scripted([1]), registry)

    pipeline.deliver([_event("1"), _event("2", key="p2"), _event("3", "MODIFY"), _event("4", "REMOVE")])

    labels = {"table": TABLE, "sink": "hook", "event_name": "INSERT", "outcome": "delivered"}
    assert _value(registry, "dynamodb_consumer_deliveries_total", **labels) == 2
    assert _value(registry, "dynamodb_consumer_records_filtered_total", table=TABLE, event_name="MODIFY") == 1
    assert _value(registry, "dynamodb_consumer_records_filtered_total", table=TABLE, event_name="REMOVE") == 1
    assert _value(registry, "dynamodb_consumer_sink_retries_total", table=TABLE, sink="hook") == 1
    assert _value(registry, "dynamodb_consumer_throttles_total", table=TABLE, operation="hook") == 1
    assert _value(registry, "dynamodb_consumer_sink_request_duration_seconds_count", table=TABLE, sink="hook") == 2


def test_pipeline_counts_dead_letters_once_stored() -> None:
    registry = CollectorRegistry()
    dead: list[Any] = []
    pipeline = _pipeline(_Scripted(PermanentDeliveryError("400")), registry, dead)

    pipeline.deliver([_event("1")])

    assert len(dead) == 1
    labels = {"table": TABLE, "sink": "hook", "event_name": "INSERT"}
    assert _value(registry, "dynamodb_consumer_deliveries_total", **labels, outcome="dead_lettered") == 1
    assert _value(registry, "dynamodb_consumer_deliveries_total", **labels, outcome="delivered") == 0
    assert _value(registry, "dynamodb_consumer_sink_retries_total", table=TABLE, sink="hook") == 0


def test_settled_records_give_lag_and_max_lag() -> None:
    registry = CollectorRegistry()
    metrics = ProcessorMetrics(registry, TABLE)
    now = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    metrics.settled([datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 8, tzinfo=UTC)], now)
    assert _value(registry, "dynamodb_consumer_lag_seconds_count", table=TABLE) == 2
    assert _value(registry, "dynamodb_consumer_lag_seconds_sum", table=TABLE) == 12
    assert _value(registry, "dynamodb_consumer_max_lag_seconds", table=TABLE) == 10


def test_child_watch_counts_starts_crashes_and_stuck_batches(tmp_path: Path) -> None:
    alive = {101, 102, 103}
    clock = [1000.0]
    watch = ChildWatch(tmp_path, stuck_after_seconds=30, alive=lambda pid: pid in alive, clock=lambda: clock[0])
    busy = ChildState(tmp_path, pid=101)
    clean = ChildState(tmp_path, pid=102)
    ChildState(tmp_path, pid=103)
    busy.busy(since=990.0)

    first = watch.survey()
    assert sorted(first.started) == [101, 102, 103]
    assert (first.crashed, first.stuck, first.running) == ((), (), 3)

    clock[0] = 1100.0
    clean.ended(clean=True)
    alive.discard(103)  # killed: it never wrote its end
    second = watch.survey()
    assert second.started == ()
    assert sorted(second.gone) == [102, 103]
    assert second.crashed == (103,)
    assert second.stuck == ((101, 110.0),)
    assert second.running == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["101"]


@pytest.fixture
def server() -> Iterator[tuple[HealthServer, HealthState, CollectorRegistry]]:
    registry = CollectorRegistry()
    state = HealthState()
    running = HealthServer("127.0.0.1", 0, registry, state).start()
    yield running, state, registry
    running.stop()


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the test's own loopback server
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())


def test_health_endpoints_follow_the_state(server: tuple[HealthServer, HealthState, CollectorRegistry]) -> None:
    running, state, registry = server
    base = f"http://127.0.0.1:{running.port}"
    ProcessorMetrics(registry, TABLE).records_received.labels(TABLE, "INSERT").inc(3)

    assert _get(f"{base}/readyz") == (503, {"status": "not ready", "scheduler": "CREATED"})
    assert _get(f"{base}/healthz")[0] == 200  # starting counts as alive: the probe must not kill a slow start
    state.engine, state.scheduler, state.ready = "running", "STARTED", True
    assert _get(f"{base}/readyz")[0] == 200
    state.stuck = [{"pid": 7, "busy_seconds": 901.0}]
    assert _get(f"{base}/healthz") == (
        503,
        {"status": "unhealthy", "engine": "running", "stuck": [{"pid": 7, "busy_seconds": 901.0}]},
    )
    state.stuck, state.engine = [], "unresponsive"
    assert _get(f"{base}/healthz")[0] == 503
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    assert f'dynamodb_consumer_records_received_total{{event_name="INSERT",table="{TABLE}"}} 3.0' in text
    assert _get(f"{base}/nothing")[0] == 404


def test_redactor_scrubs_keys_at_any_depth_in_any_case() -> None:
    redact = Redactor(["Email", "ssn"])
    event = {
        "event": "change",
        "EMAIL": "top@example.com",
        "item": {"email": {"S": "a@example.com"}, "name": "n", "list": [{"SSN": "1"}, "keep"]},
    }
    assert redact(None, "info", event) == {
        "event": "change",
        "EMAIL": REDACTED,
        "item": {"email": REDACTED, "name": "n", "list": [{"SSN": REDACTED}, "keep"]},
    }


def test_dry_run_logs_a_json_body_as_json_so_that_it_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("INFO", json_output=True, redact=["email"])
    try:
        event = _event("1")
        DryRunSink("hook", "webhook").send([Message(event, "r", json.dumps({"new": {"email": "a@b.c"}}), JSON)])
    finally:
        structlog.reset_defaults()
    line = json.loads(stream.getvalue())
    assert line["body"] == {"new": {"email": REDACTED}}
    assert "a@b.c" not in stream.getvalue()


@pytest.mark.parametrize(
    ("item", "state"),
    [
        ({"leaseOwner": {"S": "w1"}, "checkpoint": {"S": "123"}}, "processing"),
        ({"leaseOwner": {"S": "w1"}, "checkpoint": {"S": "TRIM_HORIZON"}}, "not started"),
        ({"checkpoint": {"S": "123"}}, "unassigned"),
        ({"leaseOwner": {"S": "w1"}, "checkpoint": {"S": "SHARD_END"}}, "ended"),
    ],
)
def test_lease_items_read_as_shard_states(item: dict[str, Any], state: str) -> None:
    shard = _shard({"leaseKey": {"S": "shardId-1"}, "parentShardId": {"SS": ["shardId-0"]}, **item})
    assert shard.state == state
    assert shard.parents == ("shardId-0",)


def test_status_table_shows_each_shard_and_leases_per_worker() -> None:
    shards = (
        _shard({"leaseKey": {"S": "shardId-1"}, "leaseOwner": {"S": "w1"}, "checkpoint": {"S": "42"}}),
        _shard({"leaseKey": {"S": "shardId-0"}, "leaseOwner": {"S": "w1"}, "checkpoint": {"S": "SHARD_END"}}),
    )
    text = Status("app", "arn:stream", "w1", shards).as_table()
    assert "application app, stream arn:stream, leader w1" in text
    assert "shardId-1  w1     processing  42" in text
    assert text.endswith("2 lease(s); held per worker: w1: 1")
    assert json.loads(Status("app", None, None, shards).as_json())["shards"][0]["checkpoint"] == "42"
