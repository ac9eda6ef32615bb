"""`consumer demo`: the seed's products example, end to end, on a local moto endpoint.

Starts moto (unless given an endpoint), creates the products table with a NEW_AND_OLD_IMAGES stream, starts
`consumer run` with a log sink and a file sink, then performs the seed's put-item, a price update and a delete,
and prints each notification as the consumer delivers it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from consumer import clients
from consumer.errors import StartupError
from consumer.local import LOCAL_CREDENTIALS, LOCAL_REGION, MotoServer, create_streamed_table

TABLE = "products"
PRODUCT_ID = "prod-123"
EXPECTED = ("INSERT", "MODIFY", "REMOVE")
# Short KCL timings so the demo's consumer takes its lease within seconds rather than a minute.
DEMO_KCL_PROPERTIES = {
    "failoverTimeMillis": 10000,
    "leaseAssignmentIntervalMillis": 1000,
    "workerMetricsReporterFreqInMillis": 1000,
}


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run_demo(*, keep_running: bool, timeout_seconds: float, endpoint_url: str | None) -> int:
    """Run the demo in a directory of its own, removed at the end: kept only when the demo failed, since the
    consumer's and moto's whole logs are then what explains it."""
    for name, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    workdir = Path(tempfile.mkdtemp(prefix="consumer-demo-"))
    failed = True
    try:
        status = _demo_in(
            workdir, keep_running=keep_running, timeout_seconds=timeout_seconds, endpoint_url=endpoint_url
        )
    except KeyboardInterrupt:
        failed = False  # stopped by the user, not a failure to explain
        raise
    else:
        failed = status != 0
    finally:
        # Runs once the consumer and moto have stopped: nothing writes into the directory any more.
        if failed:
            _say(f"kept {workdir} with the consumer's and moto's logs; remove it when done")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


def _demo_in(workdir: Path, *, keep_running: bool, timeout_seconds: float, endpoint_url: str | None) -> int:
    with contextlib.ExitStack() as stack:
        if endpoint_url is None:
            _say("starting a local moto endpoint ...")
            endpoint_url = stack.enter_context(MotoServer(log_path=workdir / "moto.log")).url
        _say(f"endpoint: {endpoint_url}")
        dynamodb = clients.client("dynamodb", LOCAL_REGION, endpoint_url, None)
        stream_arn = create_streamed_table(dynamodb, TABLE)
        _say(f"table {TABLE!r} streams to {stream_arn}")

        notifications = workdir / "notifications.jsonl"
        config_path = workdir / "consumer.yaml"
        config_path.write_text(yaml.safe_dump(_demo_config(endpoint_url, notifications)), encoding="utf-8")
        consumer_log = workdir / "consumer.log"
        _say(f"starting the consumer (its log: {consumer_log}, removed at the end unless the demo fails) ...")
        consumer = stack.enter_context(_consumer_process(config_path, consumer_log))

        _write_seed_changes(dynamodb)
        _say("wrote: put-item prod-123 'Wireless Mouse' 25.99, update price to 19.99, delete-item")
        _say("waiting for the notifications ...")
        tail = _tail(notifications)
        seen: list[str] = []
        deadline = time.monotonic() + timeout_seconds
        while len(seen) < len(EXPECTED):
            if consumer.poll() is not None:
                _say(f"the consumer exited with status {consumer.returncode}; last lines of {consumer_log}:")
                _say(_last_lines(consumer_log))
                return 1
            if time.monotonic() > deadline:
                missing = ", ".join(EXPECTED[len(seen) :])
                _say(
                    f"no {missing} notification for {PRODUCT_ID} after {timeout_seconds:.0f} s; "
                    f"last lines of {consumer_log}:"
                )
                _say(_last_lines(consumer_log))
                return 1
            for event in next(tail):
                if event["keys"].get("productId") == PRODUCT_ID and event["eventName"] not in seen:
                    seen.append(event["eventName"])
                    _say(_describe(event))
            time.sleep(0.2)
        if seen != list(EXPECTED):
            _say(f"notifications arrived out of order: {seen}")
            return 1
        _say("all three notifications arrived, in order")
        if keep_running:
            _say(
                f"still running; try: AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing aws dynamodb put-item "
                f"--endpoint-url {endpoint_url} --region {LOCAL_REGION} --table-name {TABLE} --item "
                '\'{"productId": {"S": "prod-7"}, "name": {"S": "Keyboard"}, "price": {"N": "49"}}\''
                "   (Ctrl-C stops)"
            )
            with contextlib.suppress(KeyboardInterrupt):
                while consumer.poll() is None:
                    for event in next(tail):
                        _say(_describe(event))
                    time.sleep(0.2)
        return 0


def _demo_config(endpoint_url: str, notifications: Path) -> dict[str, Any]:
    return {
        # A fresh application name per run: a lease table left by an earlier run must not hold a checkpoint.
        "application_name": f"products-demo-{uuid.uuid4().hex[:8]}",
        "source": {
            "table_name": TABLE,
            "region": LOCAL_REGION,
            "endpoint_url": endpoint_url,
            # The items are written while the consumer is still starting: read the stream from its start.
            "starting_position": "TRIM_HORIZON",
            "poll_interval_ms": 250,
        },
        "sinks": [
            {"type": "log", "name": "product-notifications", "fields": ["name", "price", "category"]},
            {"type": "file", "name": "demo-feed", "path": str(notifications)},
        ],
        "shutdown_grace_seconds": 15,
        "engine": {"kcl_properties": DEMO_KCL_PROPERTIES},
    }


@contextlib.contextmanager
def _consumer_process(config_path: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "consumer", "run", "--config", str(config_path)],
            stdout=log_file,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            _say("stopping the consumer (graceful: it checkpoints first) ...")
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            _say(f"consumer stopped with status {process.returncode}")


def _write_seed_changes(dynamodb: Any) -> None:
    key = {"productId": {"S": PRODUCT_ID}}
    try:
        dynamodb.put_item(
            TableName=TABLE,
            Item={
                **key,
                "name": {"S": "Wireless Mouse"},
                "price": {"N": "25.99"},
                "category": {"S": "Electronics"},
            },
        )
        dynamodb.update_item(
            TableName=TABLE,
            Key=key,
            UpdateExpression="SET price = :price",
            ExpressionAttributeValues={":price": {"N": "19.99"}},
        )
        dynamodb.delete_item(TableName=TABLE, Key=key)
    except Exception as error:
        raise StartupError(f"cannot write the demo items: {error}") from error


def _tail(path: Path) -> Iterator[list[dict[str, Any]]]:
    offset = 0
    buffer = b""
    while True:
        lines: list[dict[str, Any]] = []
        if path.exists():
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            offset += len(chunk)
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines = [json.loads(line) for line in complete if line.strip()]
        yield lines


def _describe(event: dict[str, Any]) -> str:
    new, old = event.get("new") or {}, event.get("old") or {}
    product = event["keys"].get("productId")
    match event["eventName"]:
        case "INSERT":
            return f"  INSERT  New product added: {new.get('name')} ({product}, price {new.get('price')})"
        case "MODIFY":
            changes = ", ".join(f"{a} {old.get(a)} -> {new.get(a)}" for a in event.get("changed", []))
            return f"  MODIFY  Product updated: {new.get('name')} ({changes or 'no attribute changed'})"
        case _:
            return f"  REMOVE  Product removed: {product} (was {old.get('name')})"


def _last_lines(path: Path, count: int = 25) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-count:])
    except OSError:
        return "(no log)"
