"""What the fault scenarios share: a scriptable webhook receiver, waiting, coverage, and finding a worker's child."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from harness import Worker
from oracle import Writer

StartWorker = Callable[..., Worker]
BATCH = 10  # max_records: the bound on duplicates after a crash
FAST_SMALL_BATCHES = {"max_records": BATCH}


class Receiver(ThreadingHTTPServer):
    """A webhook endpoint whose answers a scenario scripts; it records what it accepted, in order."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.accepted: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.requests = 0
        self.answer: Callable[[int, dict[str, Any]], tuple[int, dict[str, str]]] = lambda n, body: (200, {})
        self.hang_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.server.hang_seconds:
            time.sleep(self.server.hang_seconds)
        with self.server.lock:
            self.server.requests += 1
            status, headers = self.server.answer(self.server.requests, body)
            if status < 300:
                self.server.accepted.append(body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return None


def webhook(receiver: Receiver, **delivery: Any) -> dict[str, Any]:
    return {
        "sinks": [{"type": "webhook", "name": "hook", "url": receiver.url, "timeout_seconds": 2}],
        "delivery": {"backoff_base_seconds": 0.2, "backoff_max_seconds": 1, **delivery},
    }


def wait(condition: Callable[[], bool], timeout: float, what: str, worker: Worker | None = None) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what} not reached in {timeout:.0f} s" + (f"\n{worker.tail()}" if worker else ""))
        time.sleep(0.25)
    return time.monotonic() - started


def covers(writer: Writer, events: Callable[[], list[dict[str, Any]]]) -> Callable[[], bool]:
    def done() -> bool:
        got = {(e["keys"]["productId"], int(e["new"]["version"])) for e in events() if e.get("new")}
        return set(writer.written) <= got

    return done


def children_of(worker: Worker) -> list[int]:
    """The pids of the worker's `python -m consumer.processor` children (one per shard it processes)."""
    jvm = subprocess.run(["pgrep", "-P", str(worker.process.pid)], capture_output=True, text=True, check=False)
    pids = []
    for jvm_pid in jvm.stdout.split():
        children = subprocess.run(
            ["pgrep", "-P", jvm_pid, "-f", "consumer.processor"], capture_output=True, text=True, check=False
        )
        pids += [int(pid) for pid in children.stdout.split()]
    return pids


def child_of(worker: Worker) -> int:
    """The pid of a `python -m consumer.processor` child of this worker's JVM."""
    pids = children_of(worker)
    if not pids:
        pytest.fail(f"no child process found under worker {worker.worker_id}")
    return pids[0]
