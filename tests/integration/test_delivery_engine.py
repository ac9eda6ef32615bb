"""Delivery guarantees on the real engine: a permanent refusal is dead-lettered whole and the shard moves on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from harness import Worker, checkpoints, put_product, unique

pytestmark = [pytest.mark.engine, pytest.mark.timeout(300)]


class _Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Refuse)
        self.accepted: list[str] = []
        self.down = False  # answer 503 to everything


class _Refuse(BaseHTTPRequestHandler):
    """Accepts every product but one named "poison", which it refuses with 400 (a permanent error)."""

    server: _Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        product = body["keys"]["productId"]
        status = 503 if self.server.down else 400 if product == "poison" else 200
        if status == 200:
            self.server.accepted.append(product)
        self.send_response(status)
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


def test_permanent_refusal_is_dead_lettered_with_the_full_record_and_the_shard_keeps_moving(
    dynamodb: Any, table: str, start_worker: Callable[..., Worker], receiver: _Receiver, tmp_path: Path
) -> None:
    dead_letters = tmp_path / "dead-letters.jsonl"
    application = unique("app")
    extra = {
        "sinks": [{"type": "webhook", "name": "hook", "url": f"http://127.0.0.1:{receiver.server_address[1]}/"}],
        "on_failure": {"type": "file", "path": str(dead_letters)},
        "delivery": {"max_retry_attempts": 2, "backoff_base_seconds": 0.1},
    }
    worker = start_worker(application, table, extra=extra)
    for product in ("first", "poison", "last"):
        put_product(dynamodb, table, product, name=f"{product} product", price=5)

    deadline = time.monotonic() + 150
    while receiver.accepted != ["first", "last"]:
        assert worker.process.poll() is None, worker.tail()
        assert time.monotonic() < deadline, f"accepted {receiver.accepted}\n{worker.tail()}"
        time.sleep(0.25)
    (letter,) = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert letter["sink"] == "hook"
    assert letter["error"]["class"] == "PermanentDeliveryError"
    assert "400" in letter["error"]["message"]
    assert letter["attempts"] == 1  # a permanent error burns no retries
    assert letter["record"]["dynamodb"]["NewImage"]["name"] == {"S": "poison product"}
    assert letter["record"]["eventSourceARN"].startswith("arn:aws:dynamodb:us-east-1:123456789012:table/products-")
    assert worker.stop() == 0
    (checkpoint,) = checkpoints(dynamodb, application).values()
    assert int(checkpoint) > int(letter["sequenceNumber"])  # the shard moved past the dead letter


def test_sigterm_while_the_sink_is_down_stops_within_the_grace_and_loses_nothing(
    dynamodb: Any, table: str, start_worker: Callable[..., Worker], receiver: _Receiver
) -> None:
    application = unique("app")
    worker_id = unique("worker")  # the restart keeps it, like a pod with a stable name
    extra = {
        "sinks": [{"type": "webhook", "name": "hook", "url": f"http://127.0.0.1:{receiver.server_address[1]}/"}],
        "delivery": {"max_retry_attempts": -1, "backoff_base_seconds": 0.5, "backoff_max_seconds": 2},
    }
    receiver.down = True
    worker = start_worker(application, table, extra=extra, worker_id=worker_id)
    put_product(dynamodb, table, "during-outage", price=1)
    worker.wait_for_log('"event":"delivery retry"', timeout=150)

    stopped_at = time.monotonic()
    assert worker.stop(timeout=40) == 0
    assert time.monotonic() - stopped_at < 20  # shutdown_grace_seconds in the harness
    assert "stopping during delivery" in worker.log()
    assert all(c == "TRIM_HORIZON" for c in checkpoints(dynamodb, application).values())  # nothing settled

    receiver.down = False
    again = start_worker(application, table, extra=extra, worker_id=worker_id)
    deadline = time.monotonic() + 120
    while receiver.accepted != ["during-outage"]:
        assert time.monotonic() < deadline, again.tail()
        time.sleep(0.25)
    assert again.stop() == 0


def test_a_batch_past_the_processing_timeout_stops_the_worker_without_checkpointing(
    dynamodb: Any, table: str, start_worker: Callable[..., Worker], receiver: _Receiver
) -> None:
    application = unique("app")
    extra = {
        "sinks": [
            {
                "type": "webhook",
                "name": "hook",
                "url": f"http://127.0.0.1:{receiver.server_address[1]}/",
                "timeout_seconds": 2,
            }
        ],
        # Retries that would go on for minutes: the processing timeout cuts them at 10 s.
        "delivery": {"max_retry_attempts": 1000, "backoff_base_seconds": 1, "backoff_max_seconds": 2},
    }
    receiver.down = True
    worker = start_worker(application, table, extra=extra, engine={"processing_timeout_seconds": 10})
    put_product(dynamodb, table, "stuck", price=1)
    worker.wait_for_log('"event":"delivery retry"', timeout=150)
    retrying_since = time.monotonic()

    status = worker.process.wait(timeout=60)
    assert status != 0, worker.tail()
    assert time.monotonic() - retrying_since < 30
    assert "Timedout to get status message" in worker.log()
    assert all(c == "TRIM_HORIZON" for c in checkpoints(dynamodb, application).values())
    assert receiver.accepted == []
