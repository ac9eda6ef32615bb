"""Delivery guarantees on the real engine: a permanent refusal is dead-lettered whole and the shard moves on."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from harness import Worker, checkpoints, put_product, unique
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

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


class _Verifier(ThreadingHTTPServer):
    """A Standard Webhooks receiver that knows one secret, verifying with the reference library."""

    def __init__(self, secret: str) -> None:
        super().__init__(("127.0.0.1", 0), _Verify)
        self.webhook = Webhook(secret)
        self.accepted: list[str] = []
        self.refused = 0


class _Verify(BaseHTTPRequestHandler):
    server: _Verifier

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            event = self.server.webhook.verify(body, dict(self.headers.items()))
        except WebhookVerificationError:
            self.server.refused += 1
            status = 401
        else:
            self.server.accepted.append(event["keys"]["productId"])
            status = 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return None


def test_during_a_secret_rotation_receivers_knowing_only_the_old_or_only_the_new_secret_accept(
    dynamodb: Any,
    table: str,
    start_worker: Callable[..., Worker],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, new = ("whsec_" + base64.b64encode(seed * 32).decode() for seed in (b"o", b"n"))
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", new)  # the worker inherits the environment
    monkeypatch.setenv("TEST_WEBHOOK_SECRET_OLD", old)
    receivers = {"old-only": _Verifier(old), "new-only": _Verifier(new)}
    for server in receivers.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    dead_letters = tmp_path / "dead-letters.jsonl"
    extra = {
        "sinks": [
            {
                "type": "webhook",
                "name": name,
                "url": f"http://127.0.0.1:{server.server_address[1]}/",
                "secret": {"env": "TEST_WEBHOOK_SECRET"},
                "previous_secret": {"env": "TEST_WEBHOOK_SECRET_OLD"},
            }
            for name, server in receivers.items()
        ],
        "on_failure": {"type": "file", "path": str(dead_letters)},  # a refused signature would land here
    }
    try:
        worker = start_worker(unique("app"), table, extra=extra)
        for product in ("rotated-1", "rotated-2"):
            put_product(dynamodb, table, product, price=3)

        deadline = time.monotonic() + 150
        while any(r.accepted != ["rotated-1", "rotated-2"] for r in receivers.values()):
            assert worker.process.poll() is None, worker.tail()
            assert time.monotonic() < deadline, f"{[(r.accepted, r.refused) for r in receivers.values()]}"
            time.sleep(0.25)
        assert [r.refused for r in receivers.values()] == [0, 0]
        assert not dead_letters.exists()
        assert worker.stop() == 0
    finally:
        for server in receivers.values():
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
