"""The three readers of a drain, started the way they run for real, and followed until they have read N records.

(a) the service: `consumer run` (supervisor, KCL JVM, one Python child per shard), memory sink;
(b) the Java reference: the same JVM and rendered properties with `referenceProcessor = count`, no Python;
(c) the boto3 poller of bench/poller.py.

Progress of (a) and (b) is their checkpoint in the lease table (both checkpoint every batch); (c) reports its own.
The clock starts at the first batch seen done, not at process start: a new KCL application waits a random
1-30 s before it takes its first lease, and JVM start-up is no part of reading the stream.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.procs import Snapshot, Tree, peaks, window
from consumer.aws import resolve_stream_arn
from consumer.config import Config
from consumer.environment import CHILDREN_DIR_ENV, RESOLVED_CONFIG_ENV, STOP_FILE_ENV
from consumer.local import LOCAL_CREDENTIALS, LOCAL_REGION
from consumer.supervisor import BRIDGE_CLASS, KCL_DIR, find_engine, render_properties

# The integration tests' KCL timings: the first lease is assigned within seconds instead of tens of seconds.
FAST_KCL = {
    "failoverTimeMillis": 5000,
    "leaseAssignmentIntervalMillis": 1000,
    "workerMetricsReporterFreqInMillis": 1000,
}
SAMPLE_SECONDS = 0.1
# After the drain, how long the reader is watched doing nothing: its idle cost (lease renewals, polls, heartbeats).
IDLE_SECONDS = 5.0
_RECEIVED = re.compile(r"^dynamodb_consumer_records_received_total\{[^}]*\}\s+(\S+)$", re.MULTILINE)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def local_env() -> dict[str, str]:
    # Every process is given the endpoint explicitly; a global one would send the KCL's CloudWatch calls there too.
    env = {**os.environ, **LOCAL_CREDENTIALS, "AWS_REGION": LOCAL_REGION}
    env.pop("AWS_ENDPOINT_URL", None)
    return env


# Keeps no message, like the Java reference processor, which only counts: the child's memory is its own.
COUNTING_SINK = {"type": "memory", "name": "memory", "keep": 0}


def service_config(
    application: str,
    table: str,
    endpoint: str,
    *,
    poll_interval_ms: int,
    sinks: list[dict[str, Any]],
    max_records: int = 1000,
) -> dict[str, Any]:
    return {
        "application_name": application,
        "source": {
            "table_name": table,
            "region": LOCAL_REGION,
            "endpoint_url": endpoint,
            "starting_position": "TRIM_HORIZON",
            "max_records": max_records,
            "poll_interval_ms": poll_interval_ms,
        },
        "sinks": sinks,
        "http": {"host": "127.0.0.1", "port": 0},
        "engine": {"worker_id": unique("bench"), "kcl_properties": FAST_KCL},
    }


@dataclass
class Drain:
    """One reader's drain of N records: the window from the first batch seen done to the last."""

    reader: str
    records: int
    first_count: int = 0
    window_seconds: float = 0.0
    until_first_seconds: float = 0.0  # process start to the first batch done: JVM start and the KCL's wait
    cpu_window: dict[str, float] = field(default_factory=dict)  # CPU seconds per role, within the window
    cpu_total: dict[str, float] = field(default_factory=dict)  # CPU seconds per role, process start to the end
    idle_cpu_percent: dict[str, float] = field(default_factory=dict)  # per role, with nothing left to read
    peak_rss_mib: dict[str, list[float]] = field(default_factory=dict)
    exit_status: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def counted(self) -> int:
        return self.records - self.first_count

    def as_dict(self) -> dict[str, Any]:
        rate = self.counted / self.window_seconds if self.window_seconds > 0 else 0.0
        cpu = sum(v for role, v in self.cpu_window.items() if role != "moto")
        return {
            "reader": self.reader,
            "records": self.records,
            "records_in_window": self.counted,
            "window_seconds": round(self.window_seconds, 3),
            "records_per_second": round(rate, 1),
            "until_first_batch_seconds": round(self.until_first_seconds, 2),
            "cpu_seconds_window": {k: round(v, 3) for k, v in sorted(self.cpu_window.items())},
            "cpu_seconds_total": {k: round(v, 3) for k, v in sorted(self.cpu_total.items())},
            "cpu_seconds_per_10k": round(cpu / self.counted * 10_000, 3) if self.counted else None,
            "cpu_seconds_per_10k_by_role": {
                k: round(v / self.counted * 10_000, 3) for k, v in sorted(self.cpu_window.items()) if self.counted
            },
            "idle_cpu_percent": {k: round(v, 2) for k, v in sorted(self.idle_cpu_percent.items())},
            "peak_rss_mib": self.peak_rss_mib,
            "exit_status": self.exit_status,
            "notes": self.notes,
        }


def stream_base(streams: Any, stream_arn: str) -> dict[str, int]:
    """Each shard's first sequence number: moto numbers a shard's records consecutively from it."""
    shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    return {s["ShardId"]: int(s["SequenceNumberRange"]["StartingSequenceNumber"]) for s in shards}


def checkpointed(dynamodb: Any, application: str, base: dict[str, int]) -> int:
    """Records covered by the application's checkpoints (0 before the lease table exists)."""
    try:
        items = dynamodb.scan(TableName=application, ConsistentRead=True)["Items"]
    except dynamodb.exceptions.ResourceNotFoundException:
        return 0
    total = 0
    for item in items:
        value = item.get("checkpoint", {}).get("S", "")
        shard = next((s for s in base if item["leaseKey"]["S"].endswith(s)), None)
        if value.isdigit() and shard is not None:
            total += int(value) - base[shard] + 1
    return total


def follow(
    drain: Drain,
    *,
    tree: Tree,
    progress: Callable[[], int],
    alive: Callable[[], bool],
    started: float,
    timeout: float,
) -> None:
    """Sample until `progress` reaches the drain's records; fill in the window, the CPU and the peaks."""
    first: Snapshot | None = None
    opening = tree.sample(started)
    deadline = time.monotonic() + timeout
    last = opening
    while time.monotonic() < deadline:
        count = progress()
        last = tree.sample(time.time())
        if first is None and count > 0:
            first, drain.first_count = last, count
            drain.until_first_seconds = last.at - started
        if count >= drain.records:
            break
        if not alive():
            drain.notes.append(f"the reader exited after {count} records")
            break
        time.sleep(SAMPLE_SECONDS)
    else:
        drain.notes.append(f"timed out after {timeout:.0f} s at {progress()} records")
    if first is not None:
        drain.window_seconds = last.at - first.at
        drain.cpu_window = window(first, last)
    drain.cpu_total = window(opening, last)
    if drain.records <= progress() and alive():
        time.sleep(IDLE_SECONDS)
        idle = tree.sample(time.time())
        drain.idle_cpu_percent = {
            role: 100 * seconds / (idle.at - last.at) for role, seconds in window(last, idle).items() if role != "moto"
        }
    drain.peak_rss_mib = peaks(tree)


def _stop(process: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@contextmanager
def service(config: dict[str, Any], workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`consumer run` with this configuration; stopped with SIGTERM, as an orchestrator stops it."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "consumer.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    log = workdir / "consumer.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "consumer", "run", "--config", str(path)],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            env=local_env(),
        )
    try:
        yield process, log
    finally:
        _stop(process)


def http_url(log: Path, process: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        for line in text.splitlines():
            if '"event":"http endpoints"' in line or '"event": "http endpoints"' in line:
                return str(json.loads(line)["url"])
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}:\n{tail(log)}")
        time.sleep(0.2)
    raise RuntimeError(f"the service logged no http endpoints in {timeout:.0f} s:\n{tail(log)}")


def received_total(url: str) -> int:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310 - loopback http
        text = response.read().decode()
    return int(sum(float(value) for value in _RECEIVED.findall(text)))


def tail(log: Path, lines: int = 30) -> str:
    if not log.exists():
        return ""
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def drain_service(
    dynamodb: Any,
    streams: Any,
    *,
    table: str,
    stream_arn: str,
    records: int,
    endpoint: str,
    workdir: Path,
    watch: tuple[int, ...] = (),
    **options: Any,
) -> Drain:
    application = unique("bench-service")
    config = service_config(application, table, endpoint, sinks=[COUNTING_SINK], **options)
    base = stream_base(streams, stream_arn)
    drain = Drain("service", records)
    started = time.time()
    with service(config, workdir) as (process, log):
        tree = Tree(process.pid, watch)
        follow(
            drain,
            tree=tree,
            progress=lambda: checkpointed(dynamodb, application, base),
            alive=lambda: process.poll() is None,
            started=started,
            timeout=600,
        )
        try:
            received = received_total(http_url(log, process))
            if received != records:
                drain.notes.append(f"/metrics counted {received} records received, not {records}")
        except (OSError, RuntimeError) as error:
            drain.notes.append(f"/metrics not read: {error}")
        drain.exit_status = _stop(process)
    return drain


def render_engine(
    config: dict[str, Any], workdir: Path, *, executable: str | None = None, extra: str = ""
) -> tuple[list[str], dict[str, str]]:
    """The JVM command line and environment `consumer run` would use, with its rendered properties plus `extra`.

    `executable` replaces the child command (the KCL splits it on spaces).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    parsed = Config.model_validate(config)
    env = local_env()
    stream_arn = resolve_stream_arn(parsed.source)
    resolved = parsed.model_copy(update={"source": parsed.source.model_copy(update={"stream_arn": stream_arn})})
    worker_id = parsed.engine.worker_id or unique("bench")
    properties = render_properties(resolved, stream_arn, worker_id, sys.executable)
    if executable is not None:
        properties = re.sub(r"(?m)^executableName = .*$", f"executableName = {executable}", properties)
    path = workdir / "kcl.properties"
    path.write_text(properties + extra, encoding="utf-8")
    (workdir / "config.json").write_text(resolved.model_dump_json(), encoding="utf-8")
    for name in ("metrics", "children"):
        (workdir / name).mkdir(exist_ok=True)
    env.update(
        {
            RESOLVED_CONFIG_ENV: str(workdir / "config.json"),
            STOP_FILE_ENV: str(workdir / "stopping"),
            CHILDREN_DIR_ENV: str(workdir / "children"),
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    engine = find_engine(parsed)
    command = [
        engine.java,
        *parsed.engine.jvm_options,
        f"-Dlogback.configurationFile={KCL_DIR / 'logback.xml'}",
        f"-Dconsumer.kcl.logLevel={parsed.engine.log_level}",
        "-Dconsumer.log.console=false",
        "-cp",
        f"{engine.jars_dir}{os.sep}*",
        BRIDGE_CLASS,
        str(path),
    ]
    return command, env


def drain_engine(
    reader: str,
    *,
    dynamodb: Any,
    streams: Any,
    table: str,
    stream_arn: str,
    records: int,
    endpoint: str,
    workdir: Path,
    executable: str | None = None,
    extra: str = "",
    watch: tuple[int, ...] = (),
    **options: Any,
) -> Drain:
    """The bridge JVM started directly: the Java reference, or the service's child under a profiler."""
    application = unique(f"bench-{reader}")
    config = service_config(application, table, endpoint, sinks=[COUNTING_SINK], **options)
    command, env = render_engine(config, workdir, executable=executable, extra=extra)
    base = stream_base(streams, stream_arn)
    drain = Drain(reader, records)
    log = workdir / "engine.log"
    started = time.time()
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:
        follow(
            drain,
            tree=Tree(process.pid, watch),
            progress=lambda: checkpointed(dynamodb, application, base),
            alive=lambda: process.poll() is None,
            started=started,
            timeout=600,
        )
    finally:
        drain.exit_status = _stop(process)
    if drain.exit_status != 0:
        drain.notes.append(f"engine exited with {drain.exit_status}:\n{tail(log)}")
    return drain


def drain_poller(
    stream_arn: str,
    records: int,
    endpoint: str,
    workdir: Path,
    *,
    poll_interval_ms: int,
    max_records: int = 1000,
    watch: tuple[int, ...] = (),
) -> Drain:
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "bench.poller",
        "--endpoint",
        endpoint,
        "--stream-arn",
        stream_arn,
        "--expected",
        str(records),
        "--poll-interval-ms",
        str(poll_interval_ms),
        "--max-records",
        str(max_records),
    ]
    drain = Drain("boto3-poller", records)
    started = time.time()
    with (workdir / "poller.log").open("ab") as errors:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            env=local_env(),
            cwd=Path(__file__).resolve().parent.parent,
        )
    tree = Tree(process.pid, watch)
    opening = tree.sample(started)
    first: tuple[float, Snapshot] | None = None
    last: tuple[float, Snapshot] | None = None
    assert process.stdout is not None  # noqa: S101 - set by PIPE above
    for line in process.stdout:
        # Sampled as each batch is reported; the poller's own clock marks the batch.
        report = json.loads(line)
        snapshot = tree.sample(time.time())
        if first is None:
            first = (float(report["t"]), snapshot)
            drain.first_count = int(report["count"])
            drain.until_first_seconds = float(report["t"]) - started
        last = (float(report["t"]), snapshot)
        if int(report["count"]) >= records:
            break
    drain.exit_status = process.wait(timeout=60)
    if first is not None and last is not None:
        drain.window_seconds = last[0] - first[0]
        drain.cpu_window = window(first[1], last[1])
        drain.cpu_total = window(opening, last[1])
    drain.peak_rss_mib = peaks(tree)
    return drain
