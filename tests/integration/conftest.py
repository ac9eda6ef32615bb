"""Fixtures for tests on the real engine: one moto server per session, workers as `consumer run` processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from harness import FAST_KCL, Worker, unique

from consumer.local import LOCAL_CREDENTIALS, LOCAL_REGION, MotoServer, create_streamed_table


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    saved = {name: os.environ.get(name) for name in (*LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL", "AWS_REGION")}
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ["AWS_REGION"] = LOCAL_REGION
    server = MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log").start()
    try:
        yield server
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def dynamodb(moto: MotoServer) -> Any:
    return boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=moto.url)


@pytest.fixture
def table(dynamodb: Any) -> str:
    name = unique("products")
    create_streamed_table(dynamodb, name)
    return name


@pytest.fixture
def start_worker(moto: MotoServer, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(
        application: str,
        table: str,
        *,
        starting_position: str = "TRIM_HORIZON",
        worker_id: str | None = None,
        extra: dict[str, Any] | None = None,
        source: dict[str, Any] | None = None,
        engine: dict[str, Any] | None = None,
        args: tuple[str, ...] = (),
    ) -> Worker:
        worker_id = worker_id or unique("worker")
        directory = tmp_path / worker_id
        directory.mkdir(exist_ok=True)  # a restart under the same worker id
        config = {
            "application_name": application,
            "source": {
                "table_name": table,
                "region": LOCAL_REGION,
                "endpoint_url": moto.url,
                "starting_position": starting_position,
                "poll_interval_ms": 200,
                "max_records": 100,
                **(source or {}),
            },
            "sinks": [
                {"type": "log", "name": "log", "fields": ["name", "price"]},
                {"type": "file", "name": "recording", "path": str(directory / "events.jsonl")},
            ],
            "shutdown_grace_seconds": 20,
            "http": {"port": 0},  # several workers per test, and tests in parallel: any free port
            "engine": {
                "worker_id": worker_id,
                "kcl_properties": FAST_KCL,
                "streams_max_attempts": 3,
                **(engine or {}),
            },
            **(extra or {}),
        }
        config_path = directory / "consumer.yaml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        with (directory / "consumer.log").open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "consumer", "run", "--config", str(config_path), *args],
                stdout=log_file,
                stderr=log_file,
                stdin=subprocess.DEVNULL,
            )
        worker = Worker(application, directory, process, worker_id)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()
