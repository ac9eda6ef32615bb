"""`source.maximum_batching_window_seconds` on the real engine: batches as a Lambda handler would see them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import Worker, put_product, unique

pytestmark = [pytest.mark.engine, pytest.mark.timeout(300)]

WINDOW_SECONDS = 6


def _batch_handler(tmp_path: Path) -> tuple[dict[str, Any], Callable[[], list[list[str]]]]:
    """A handler writing one line per invocation: the product ids of its batch, in order."""
    out = tmp_path / "batches.jsonl"
    module = tmp_path / "batches_fn.py"
    module.write_text(
        "import json\n"
        "def handler(event, context):\n"
        f"    with open({str(out)!r}, 'a') as lines:\n"
        "        ids = [r['dynamodb']['Keys']['productId']['S'] for r in event['Records']]\n"
        "        lines.write(json.dumps(ids) + '\\n')\n",
        encoding="utf-8",
    )

    def batches() -> list[list[str]]:
        return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    return {"type": "handler", "name": "fn", "handler": f"{module}:handler"}, batches


def _wait(worker: Worker, condition: Callable[[], bool], what: str, timeout: float = 120) -> float:
    """Seconds until `condition` held."""
    started = time.monotonic()
    while not condition():
        if worker.process.poll() is not None:
            pytest.fail(f"worker exited with {worker.process.returncode}:\n{worker.tail()}")
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what} not reached in {timeout:.0f} s\n{worker.tail()}")
        time.sleep(0.1)
    return time.monotonic() - started


def test_records_written_slowly_are_delivered_in_one_batch_when_it_fills_or_the_window_closes(
    dynamodb: Any, table: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    sink, batches = _batch_handler(tmp_path)
    worker = start_worker(
        unique("app"),
        table,
        source={"maximum_batching_window_seconds": WINDOW_SECONDS, "batch_size": 4},  # reads every 200 ms
        extra={"sinks": [sink]},
    )
    put_product(dynamodb, table, "first")
    # A lone record waits for its window: never delivered sooner (its window opens when the worker reads it).
    waited = _wait(worker, lambda: len(batches()) == 1, "the first batch", timeout=180)
    assert batches() == [["first"]]
    assert waited >= WINDOW_SECONDS

    # Six records, one every 0.3 s: one or none per read, and all written well within a window.
    for n in range(6):
        put_product(dynamodb, table, f"slow-{n}")
        time.sleep(0.3)
    written = time.monotonic()
    _wait(worker, lambda: len(batches()) >= 2, "the full batch")
    # The first four fill a batch and go at once; the last two wait for a window of their own.
    _wait(worker, lambda: len(batches()) >= 3, "the last batch")
    seen = time.monotonic()
    assert batches() == [["first"], ["slow-0", "slow-1", "slow-2", "slow-3"], ["slow-4", "slow-5"]]
    # slow-4 was written about 0.6 s before `written`, and its window opened only when the worker read it.
    assert seen - written >= WINDOW_SECONDS - 1
    assert worker.stop() == 0
