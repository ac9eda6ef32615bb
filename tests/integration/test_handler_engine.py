"""The handler sink behaves like a Lambda runtime, on the real engine: hung handlers, SystemExit, lanes, Powertools."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import Worker, put_product, unique

pytestmark = [pytest.mark.engine, pytest.mark.timeout(300)]

StartWorker = Callable[..., Worker]

# Appends one JSON line per record it sees (product and worker pid) before acting on it.
RECORDING_HANDLER = """
import json, os, sys, time
print("Loading function")

def handler(event, context):
    for record in event["Records"]:
        product = record["dynamodb"]["Keys"]["productId"]["S"]
        with open(SEEN, "a") as out:
            out.write(json.dumps({"product": product, "pid": os.getpid(), "started": time.time()}) + "\\n")
        print(f"handling {product}")
        ACT(product)
        with open(DONE, "a") as out:
            out.write(json.dumps({"product": product, "pid": os.getpid(), "ended": time.time()}) + "\\n")
"""


def _recording_handler(tmp_path: Path, act: str) -> tuple[Path, Path, Path]:
    """The handler file, and the files of what it saw and what it finished."""
    seen, done = tmp_path / "seen.jsonl", tmp_path / "done.jsonl"
    module = tmp_path / "recording.py"
    module.write_text(f"SEEN, DONE = {str(seen)!r}, {str(done)!r}\n{act}\n{RECORDING_HANDLER}")
    return module, seen, done


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _log_lines(worker: Worker) -> list[dict[str, Any]]:
    lines = []
    for line in worker.log().splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def _wait(condition: Callable[[], bool], timeout: float, what: str, worker: Worker) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert worker.process.poll() is None, f"worker exited while waiting for {what}\n{worker.tail()}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s\n{worker.tail()}"
        time.sleep(0.25)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _assert_loaded_once_per_worker_process(worker: Worker, invoked_pids: set[int]) -> None:
    """Module-level code ran once in each worker process, and in every process that ran an invocation."""
    lines = _log_lines(worker)
    loads = Counter(line["worker_pid"] for line in lines if line.get("event") == "Loading function")
    started = {line["worker_pid"] for line in lines if line.get("event") == "handler worker started"}
    assert loads, worker.tail()
    assert set(loads.values()) == {1}, loads
    assert set(loads) <= started
    assert invoked_pids <= set(loads)


def test_a_hung_invocation_is_killed_and_a_fresh_worker_process_handles_the_next_records(
    dynamodb: Any, table: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    module, seen, done = _recording_handler(
        tmp_path, "def ACT(product):\n    if product == 'hang':\n        time.sleep(3600)\n"
    )
    dead_letters = tmp_path / "dead-letters.jsonl"
    extra = {
        "sinks": [{"type": "handler", "name": "fn", "handler": f"{module}:handler", "timeout_seconds": 2}],
        "delivery": {"max_retry_attempts": 1, "backoff_base_seconds": 0.1},
        "on_failure": {"type": "file", "path": str(dead_letters)},
    }
    worker = start_worker(unique("app"), table, extra=extra)
    put_product(dynamodb, table, "before", name="before")
    _wait(lambda: [x["product"] for x in _lines(done)] == ["before"], 150, "before handled", worker)
    put_product(dynamodb, table, "hang", name="hang")
    _wait(dead_letters.exists, 60, "the hung record dead-lettered", worker)
    for product in ("after-1", "after-2", "after-3"):
        put_product(dynamodb, table, product, name=product)
    _wait(lambda: len(_lines(done)) == 4, 60, "the later records handled", worker)

    hung = {x["pid"] for x in _lines(seen) if x["product"] == "hang"}
    assert len(hung) == 2  # two attempts, each in its own worker process: the first was killed at its timeout
    assert all(_gone(pid) for pid in hung)
    after = {x["pid"] for x in _lines(done) if x["product"].startswith("after-")}
    assert after.isdisjoint(hung)
    (letter,) = _lines(dead_letters)
    assert letter["error"]["class"] == "FunctionError"
    assert "timed out after 2 s" in letter["error"]["message"]
    assert letter["attempts"] == 2
    assert "still running" not in worker.log()
    _assert_loaded_once_per_worker_process(worker, {x["pid"] for x in _lines(seen)})
    # What the handler printed is a log line of its invocation, on its shard.
    printed = [line for line in _log_lines(worker) if line.get("event") == "handling after-1"]
    assert printed
    assert printed[0]["shard_id"].startswith("shardId-")
    assert printed[0]["aws_request_id"]
    assert worker.stop() == 0


def test_system_exit_is_retried_then_dead_lettered_and_never_delivered(
    dynamodb: Any, table: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    module, seen, done = _recording_handler(
        tmp_path, "def ACT(product):\n    if product == 'poison':\n        raise SystemExit(0)\n"
    )
    dead_letters = tmp_path / "dead-letters.jsonl"
    extra = {
        "sinks": [{"type": "handler", "name": "fn", "handler": f"{module}:handler", "timeout_seconds": 10}],
        "delivery": {"max_retry_attempts": 2, "backoff_base_seconds": 0.1, "bisect_batch_on_error": True},
        "on_failure": {"type": "file", "path": str(dead_letters)},
    }
    for product in ("first", "poison", "last"):
        put_product(dynamodb, table, product, name=product)
    worker = start_worker(unique("app"), table, extra=extra)
    _wait(
        lambda: dead_letters.exists() and {"first", "last"} <= {x["product"] for x in _lines(done)},
        150,
        "the others handled and the poison dead-lettered",
        worker,
    )
    assert "poison" not in {x["product"] for x in _lines(done)}
    (letter,) = _lines(dead_letters)
    assert letter["record"]["dynamodb"]["Keys"] == {"productId": {"S": "poison"}}
    assert letter["error"]["class"] == "FunctionError"
    assert "SystemExit" in letter["error"]["message"]
    assert letter["attempts"] == 3
    poisoned = {x["pid"] for x in _lines(seen) if x["product"] == "poison"}
    assert len(poisoned) >= 3  # the runtime ends after a SystemExit: each attempt had a fresh worker process
    _assert_loaded_once_per_worker_process(worker, {x["pid"] for x in _lines(seen)})
    assert worker.stop() == 0


def test_four_lanes_with_a_300_ms_handler_never_time_out(
    dynamodb: Any, table: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    module, _, done = _recording_handler(tmp_path, "def ACT(product):\n    time.sleep(0.3)\n")
    extra = {
        "sinks": [{"type": "handler", "name": "fn", "handler": f"{module}:handler", "timeout_seconds": 5}],
        "delivery": {"parallelization_factor": 4, "max_retry_attempts": 0},
        "on_failure": {"type": "file", "path": str(tmp_path / "dead-letters.jsonl")},
    }
    products = [f"p{i:02d}" for i in range(24)]
    for product in products:  # before the start: one read, so every lane has records at once
        put_product(dynamodb, table, product, name=product)
    worker = start_worker(unique("app"), table, extra=extra)
    _wait(lambda: len(_lines(done)) >= len(products), 150, "every record handled", worker)
    assert sorted(x["product"] for x in _lines(done)) == products
    assert not (tmp_path / "dead-letters.jsonl").exists()
    log = worker.log()
    assert "timed out" not in log
    assert "still running" not in log
    assert "delivery retry" not in log
    assert len({x["pid"] for x in _lines(done)}) == 4  # a worker process per lane
    printed = [line for line in _log_lines(worker) if str(line.get("event", "")).startswith("handling p")]
    assert len(printed) == len(products)
    assert all(line["shard_id"].startswith("shardId-") for line in printed)  # the lanes' threads know the shard
    assert worker.stop() == 0


POWERTOOLS_HANDLER = """
import os

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
logger = Logger(service="products")


def record_handler(record: DynamoDBRecord) -> None:
    product = record.dynamodb.keys["productId"]
    with open(SEEN, "a") as out:
        out.write(product + "\\n")
    attempts = open(SEEN).read().split().count(product)
    if product == "poison" or (product == "flaky" and attempts == 1):
        raise ValueError(f"cannot handle {product}")
    logger.info("handled", product=product)


@logger.inject_lambda_context
def lambda_handler(event, context):
    stream = DynamoDBStreamEvent(event)
    logger.info("batch", records=len(list(stream.records)))
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
"""


def test_a_powertools_handler_runs_unchanged_and_gets_lambdas_retries(
    dynamodb: Any, table: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    seen = tmp_path / "seen.txt"
    module = tmp_path / "powertools_fn.py"
    module.write_text(f"SEEN = {str(seen)!r}\n{POWERTOOLS_HANDLER}")
    dead_letters = tmp_path / "dead-letters.jsonl"
    extra = {
        "sinks": [
            {
                "type": "handler",
                "name": "products-fn",
                "handler": f"{module}:lambda_handler",
                "timeout_seconds": 30,
                "function_response_types": ["ReportBatchItemFailures"],
            }
        ],
        "delivery": {"max_retry_attempts": 2, "backoff_base_seconds": 0.1},
        "on_failure": {"type": "file", "path": str(dead_letters)},
    }
    products = ["a", "b", "flaky", "c", "poison"]
    for product in products:  # before the start: one batch, as Lambda would read them
        put_product(dynamodb, table, product, name=product)
    worker = start_worker(unique("app"), table, extra=extra)
    _wait(dead_letters.exists, 150, "the poison record dead-lettered", worker)

    # Lambda's partial batch response: each attempt resumes at the lowest failed record, so records before it are
    # not handled again, and the poison record gets its three attempts (max_retry_attempts 2).
    counts = Counter(seen.read_text().split())
    assert counts == {"a": 1, "b": 1, "flaky": 2, "c": 2, "poison": 3}
    (letter,) = _lines(dead_letters)
    assert letter["record"]["dynamodb"]["Keys"] == {"productId": {"S": "poison"}}
    assert letter["attempts"] == 3
    # Logger.inject_lambda_context read the context: its lines name the function and our invocation's request id.
    structured = [
        (line, json.loads(line["event"]))
        for line in _log_lines(worker)
        if line.get("stream") == "stdout" and str(line.get("event", "")).startswith("{")
    ]
    handled = [(ours, theirs) for ours, theirs in structured if theirs.get("message") == "handled"]
    assert {theirs["product"] for _, theirs in handled} == {"a", "b", "flaky", "c"}
    for ours, theirs in handled:
        assert theirs["function_name"] == "products-fn"
        assert theirs["function_request_id"] == ours["aws_request_id"]
        assert theirs["function_arn"].endswith(":function:products-fn")
        assert ours["shard_id"].startswith("shardId-")
    assert worker.stop() == 0
