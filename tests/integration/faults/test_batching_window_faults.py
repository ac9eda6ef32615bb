"""A graceful stop while records wait in the batching window, checked by the fault suite's oracle."""

from __future__ import annotations

import json
from typing import Any

import pytest
from harness import unique
from oracle import Writer, check
from support import FAST_SMALL_BATCHES, StartWorker, covers, wait

pytestmark = [pytest.mark.engine, pytest.mark.faults, pytest.mark.timeout(420)]


def test_sigterm_while_records_are_held_in_the_window(dynamodb: Any, table: str, start_worker: StartWorker) -> None:
    writer = Writer(dynamodb, table)
    application, worker_id = unique("app"), unique("worker")
    # A window far longer than the test: only a full batch, the stop or the shard's end lets records go.
    source = {**FAST_SMALL_BATCHES, "batch_size": 10, "maximum_batching_window_seconds": 300}
    first = start_worker(application, table, worker_id=worker_id, source=source, extra={"log_level": "DEBUG"})
    writer.write(25)
    wait(lambda: len(first.events()) >= 20, 150, "two full batches", first)
    # The last read logged says what the child holds: all 25 read, five of them waiting.
    wait(lambda: _held(first.log()) == 5, 60, "the last five read and held", first)
    assert len(first.events()) == 20  # the last five are held, not delivered
    assert first.stop() == 0
    assert len(first.events()) == 25  # a graceful stop delivers what the window held, then checkpoints
    second = start_worker(application, table, worker_id=worker_id, source=source)
    writer.write(10)  # a full batch, so the second worker shows it runs and reads on from the checkpoint
    # Same worker id, same directory: both write the one events file.
    wait(covers(writer, second.events), 150, "all delivered", second)
    assert second.stop() == 0
    check(
        "SIGTERM while records are held in the batching window",
        writer,
        second.events(),
        application=application,
    )


def _held(log: str) -> int | None:
    lines = [json.loads(line) for line in log.splitlines() if '"records held in the batching window"' in line]
    return int(lines[-1]["held"]) if lines else None
