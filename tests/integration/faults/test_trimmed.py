"""A checkpoint older than the stream's retention, on the real engine: the gap is reported, then read past or not.

moto never trims; the trim hook (tests/integration/moto_trim.py) makes a shard's first records unavailable the way
DynamoDB Streams' 24-hour retention does, in a moto server running in this process.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import moto_trim
import pytest
from harness import Worker, lease_items, unique
from oracle import Writer, check

from consumer.local import LOCAL_REGION, MotoServer, create_streamed_table

pytestmark = [pytest.mark.engine, pytest.mark.faults, pytest.mark.timeout(420)]

StartWorker = Callable[..., Worker]
FAST_SMALL_BATCHES = {"max_records": 10}
GAP_EVENT = "records lost to the stream's 24-hour retention"
FIRST, LATER, TRIMMED = 10, 10, 15  # delivered before the stop, written while stopped, trimmed while stopped


@pytest.fixture
def trim_url(moto: MotoServer) -> Iterator[str]:
    """A moto server in this process with the trim hook; the session's server cannot trim."""
    del moto  # requested for the credentials and region it puts in the environment
    with moto_trim.serve() as url:
        yield url


def _wait(condition: Callable[[], bool], timeout: float, what: str, worker: Worker | None = None) -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what} not reached in {timeout:.0f} s" + (f"\n{worker.tail()}" if worker else ""))
        if worker is not None and worker.process.poll() is not None:
            pytest.fail(f"{what}: worker exited with {worker.process.returncode}\n{worker.tail()}")
        time.sleep(0.25)


def _delivered(worker: Worker) -> set[tuple[str, int]]:
    return {(e["keys"]["productId"], int(e["new"]["version"])) for e in worker.events() if e.get("new")}


def _log_lines(worker: Worker, after: int) -> list[dict[str, Any]]:
    """The JSON log lines of a worker from line `after` on (restarts under one worker id share the log file)."""
    lines = []
    for text in worker.log().splitlines()[after:]:
        try:
            line = json.loads(text)
        except ValueError:
            continue  # not a log line (a JVM warning), or one still being written
        if isinstance(line, dict) and "event" in line:
            lines.append(line)
    return lines


def _metric(url: str, name: str) -> float | None:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310 - a local test server
        for line in response.read().decode().splitlines():
            if line.startswith((name + "{", name + " ")):
                return float(line.rsplit(" ", 1)[1])
    return None


class Scenario:
    """Ten records delivered and checkpointed, the worker stopped, ten more written, the first fifteen trimmed."""

    def __init__(self, url: str, start_worker: StartWorker, **source: Any) -> None:
        self.dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=url)
        self.table = unique("trimmed")
        create_streamed_table(self.dynamodb, self.table)
        self.writer = Writer(self.dynamodb, self.table)
        self.application, self.worker_id = unique("app"), unique("worker")
        self.start_worker = start_worker
        self.source = {"endpoint_url": url, **FAST_SMALL_BATCHES, **source}
        first = self.start()
        self.writer.write(FIRST)
        _wait(lambda: set(self.writer.written) <= _delivered(first), 150, "first records delivered", first)
        assert first.stop() == 0
        ((self.shard, lease),) = lease_items(self.dynamodb, self.application).items()
        self.checkpoint = lease["checkpoint"]["S"]
        self.log_offset = len(first.log().splitlines())
        self.writer.write(LATER)
        self.sequence_numbers = moto_trim.trim(self.table, TRIMMED)  # in write order: one shard
        assert self.checkpoint == self.sequence_numbers[FIRST - 1]
        self.oldest = str(int(self.sequence_numbers[-1]) + 1)
        # Neither delivered nor still in the stream: what the gap must name.
        self.lost = self.writer.written[FIRST:TRIMMED]

    def start(self, **source: Any) -> Worker:
        return self.start_worker(
            self.application, self.table, worker_id=self.worker_id, source={**self.source, **source}
        )

    def gap_lines(self, worker: Worker) -> list[dict[str, Any]]:
        return [line for line in _log_lines(worker, self.log_offset) if line["event"].startswith(GAP_EVENT)]

    def assert_gap_named(self, line: dict[str, Any], action: str) -> None:
        assert line["level"] == "error"
        assert line["source"] == "kcl"
        assert (line["shard_id"], line["checkpoint_sequence_number"], line["oldest_available_sequence_number"]) == (
            self.shard,
            self.checkpoint,
            self.oldest,
        )
        assert line["on_trimmed"] == action
        for named in (self.shard, self.checkpoint, self.oldest):
            assert named in line["event"]
        # Exactly the records between the two named positions are the ones lost.
        between = [
            pair
            for pair, sequence in zip(self.writer.written, self.sequence_numbers, strict=False)
            if int(self.checkpoint) < int(sequence) < int(self.oldest)
        ]
        assert between == self.lost

    def check(self, scenario: str, worker: Worker) -> None:
        assert not _delivered(worker) & set(self.lost)
        self.writer.written = [pair for pair in self.writer.written if pair not in self.lost]
        check(scenario, self.writer, worker.events(), application=self.application)


def test_trimmed_checkpoint_continue(trim_url: str, start_worker: StartWorker) -> None:
    """The default (source.on_trimmed: continue): one loud error and one count, then the records still there."""
    scenario = Scenario(trim_url, start_worker)
    worker = scenario.start()
    later = set(scenario.writer.written[TRIMMED:])
    _wait(lambda: later <= _delivered(worker), 150, "the untrimmed later records delivered", worker)
    (gap,) = scenario.gap_lines(worker)
    scenario.assert_gap_named(gap, "continue")
    (endpoints,) = (line for line in _log_lines(worker, scenario.log_offset) if line["event"] == "http endpoints")
    url = str(endpoints["url"]).replace("//0.0.0.0:", "//127.0.0.1:")
    metric = f'dynamodb_consumer_trimmed_gaps_total{{table="{scenario.table}"}}'
    _wait(lambda: _metric(url, metric) == 1, 10, "the gap counted on /metrics", worker)
    assert worker.stop() == 0
    checkpoint = lease_items(scenario.dynamodb, scenario.application)[scenario.shard]["checkpoint"]["S"]
    assert checkpoint == worker.events()[-1]["sequenceNumber"]
    scenario.check("trimmed checkpoint, on_trimmed: continue", worker)


def test_trimmed_checkpoint_fail(trim_url: str, start_worker: StartWorker) -> None:
    """source.on_trimmed: fail stops the worker with status 4 and the reason, checkpoint untouched; the operator
    then accepts the gap with on_trimmed: continue, as the log line says."""
    scenario = Scenario(trim_url, start_worker, on_trimmed="fail")
    stopped = scenario.start()
    assert stopped.process.wait(timeout=120) == 4, stopped.tail()
    (gap,) = scenario.gap_lines(stopped)
    scenario.assert_gap_named(gap, "fail")
    assert "set source.on_trimmed: continue" in gap["event"]
    (last,) = [line for line in _log_lines(stopped, scenario.log_offset) if line.get("status") == 4]
    assert last["event"].startswith("engine stopped: records were trimmed")
    assert (last["shard_id"], last["checkpoint_sequence_number"]) == (scenario.shard, scenario.checkpoint)
    assert lease_items(scenario.dynamodb, scenario.application)[scenario.shard]["checkpoint"]["S"] == (
        scenario.checkpoint
    )
    assert _delivered(stopped) == set(scenario.writer.written[:FIRST])  # nothing past the gap was read

    accepted = scenario.start(on_trimmed="continue")
    later = set(scenario.writer.written[TRIMMED:])
    _wait(lambda: later <= _delivered(accepted), 150, "the untrimmed later records delivered", accepted)
    assert accepted.stop() == 0
    assert len(scenario.gap_lines(accepted)) == 2  # the stopped run's, and the one accepting the gap
    scenario.check("trimmed checkpoint, on_trimmed: fail, then continue", accepted)
