"""Helpers for tests on the real engine: workers as `consumer run` processes, lease-table readers."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

Events = list[dict[str, Any]]

# Short KCL timings: a worker takes its lease within seconds, an abandoned lease expires after 5 s.
FAST_KCL = {
    "failoverTimeMillis": 5000,
    "leaseAssignmentIntervalMillis": 1000,
    "workerMetricsReporterFreqInMillis": 1000,
}


def unique(prefix: str) -> str:
    # Shard ids and sequence numbers repeat across moto tables: every test needs its own table and lease table.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def put_product(dynamodb: Any, table: str, product_id: str, **attributes: Any) -> None:
    item = {"productId": {"S": product_id}}
    for name, value in attributes.items():
        item[name] = {"N": str(value)} if isinstance(value, int | float) else {"S": str(value)}
    dynamodb.put_item(TableName=table, Item=item)


def lease_items(dynamodb: Any, application: str) -> dict[str, dict[str, Any]]:
    items = dynamodb.scan(TableName=application, ConsistentRead=True)["Items"]
    return {item["leaseKey"]["S"]: item for item in items}


def leader(dynamodb: Any, application: str) -> str | None:
    """The worker holding the KCL leader lock (it alone moves leases), from the coordinator state table."""
    items = dynamodb.scan(TableName=f"{application}-CoordinatorState", ConsistentRead=True)["Items"]
    owners = [item["ownerName"]["S"] for item in items if "ownerName" in item]
    return owners[0] if owners else None


def checkpoints(dynamodb: Any, application: str) -> dict[str, str]:
    return {key: item["checkpoint"]["S"] for key, item in lease_items(dynamodb, application).items()}


@dataclass
class Worker:
    application: str
    directory: Path
    process: subprocess.Popen[bytes]
    worker_id: str
    events_path: Path = field(init=False)
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.events_path = self.directory / "events.jsonl"
        self.log_path = self.directory / "consumer.log"

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        lines = self.events_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def wait_for(
        self, condition: Callable[[list[dict[str, Any]]], bool], timeout: float = 120.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if condition(events):
                return events
            if self.process.poll() is not None:
                pytest.fail(f"worker {self.worker_id} exited with {self.process.returncode}:\n{self.tail()}")
            time.sleep(0.25)
        pytest.fail(
            f"worker {self.worker_id}: condition not met in {timeout:.0f} s; {len(self.events())} events\n{self.tail()}"
        )

    def wait_for_log(self, text: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.process.poll() is not None:
                pytest.fail(f"worker {self.worker_id} exited with {self.process.returncode}:\n{self.tail()}")
            time.sleep(0.25)
        pytest.fail(f"worker {self.worker_id}: {text!r} not logged in {timeout:.0f} s\n{self.tail()}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, as an orchestrator sends it; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"worker {self.worker_id} did not stop within {timeout:.0f} s\n{self.tail()}")

    def kill(self) -> None:
        """kill -9 of the whole worker: the supervisor, and with it the JVM and its children."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def http_url(self, timeout: float = 60.0) -> str:
        """Where this worker serves /metrics, /healthz and /readyz (the tests let it pick a free port)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if '"event":"http endpoints"' in line:
                    url = str(json.loads(line)["url"])
                    return url.replace("//0.0.0.0:", "//127.0.0.1:")
            if self.process.poll() is not None:
                pytest.fail(f"worker {self.worker_id} exited with {self.process.returncode}:\n{self.tail()}")
            time.sleep(0.2)
        pytest.fail(f"worker {self.worker_id}: no http endpoints logged in {timeout:.0f} s\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])
