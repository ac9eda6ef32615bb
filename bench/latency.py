"""Write -> delivery latency: writers at fixed rates, the service with a webhook sink, a loopback receiver.

Each item carries the time just before its put_item; the receiver (its own process) notes when the message
arrived. Latency = arrival - write, per record, first arrival of each eventID.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.engine import local_env, service, service_config, unique
from bench.procs import Tree, peaks, window

WARMUP_TIMEOUT = 120.0
ARRIVAL_TIMEOUT = 60.0


@dataclass
class Arrival:
    arrival: float
    written: float
    key: str
    event_id: str


@dataclass
class Receiver:
    process: subprocess.Popen[bytes]
    output: Path
    url: str

    def arrivals(self) -> list[Arrival]:
        if not self.output.exists():
            return []
        seen: set[str] = set()
        out = []
        for line in self.output.read_text(encoding="ascii").splitlines():
            parts = line.split()
            if len(parts) != len(Arrival.__dataclass_fields__) or parts[3] in seen:
                continue  # a repeated eventID is a redelivery: its first arrival counts
            seen.add(parts[3])
            out.append(Arrival(float(parts[0]), float(parts[1]), parts[2], parts[3]))
        return out

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_receiver(workdir: Path) -> Receiver:
    output = workdir / "arrivals.txt"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.receiver", str(output)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert process.stdout is not None  # noqa: S101 - set by PIPE above
    line = process.stdout.readline().decode().split()
    if line[:1] != ["port"]:
        process.kill()
        raise RuntimeError(f"the receiver did not start: {line}")
    return Receiver(process, output, f"http://127.0.0.1:{line[1]}/hook")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: an actual observed latency, never an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class Phase:
    target_rate: float
    seconds: float
    written: int = 0
    achieved_rate: float = 0.0
    writer_late_p50_ms: float = 0.0
    writer_late_p95_ms: float = 0.0
    writer_threads: int = 0
    writer_batch: int = 1
    delivered: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    batches: dict[str, float] = field(default_factory=dict)
    parts: dict[str, dict[str, float]] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        lat = self.latencies_ms
        summary = {f"p{q}": round(percentile(lat, q), 1) for q in (50, 95, 99)} if lat else {}
        if lat:
            summary["max"] = round(max(lat), 1)
            summary["mean"] = round(sum(lat) / len(lat), 1)
        return {
            "target_rate": self.target_rate,
            "seconds": self.seconds,
            "written": self.written,
            "achieved_rate": round(self.achieved_rate, 1),
            "writer_late_p50_ms": round(self.writer_late_p50_ms, 1),
            "writer_late_p95_ms": round(self.writer_late_p95_ms, 1),
            "writer_threads": self.writer_threads,
            "writer_batch": self.writer_batch,
            "delivered": self.delivered,
            "not_arrived_in_time": self.written - self.delivered,
            "latency_ms": summary,
            "cdf_ms": _cdf(lat),
            "cpu_seconds": {k: round(v, 3) for k, v in sorted(self.cpu_seconds.items())},
            "batches": self.batches,
            "parts_ms": self.parts,
        }


BATCH_GAP_SECONDS = 0.1


def batches(arrivals: list[Arrival]) -> dict[str, float]:
    """What the latency is made of, from the arrivals alone: they come in bursts, one per KCL batch.

    A record waits for the next GetRecords (on average half the time between batches), then the batch takes
    `fetch_to_first_delivery` (GetRecords, the JVM, the multilang hop, decoding, the first request), then the
    sink sends the batch one request after the other (`per_message`).
    """
    ordered = sorted(arrivals, key=lambda a: a.arrival)
    groups: list[list[Arrival]] = []
    for arrival in ordered:
        if groups and arrival.arrival - groups[-1][-1].arrival <= BATCH_GAP_SECONDS:
            groups[-1].append(arrival)
        else:
            groups.append([arrival])
    if len(groups) < 2:  # noqa: PLR2004 - an interval needs two batches
        return {}
    starts = [g[0].arrival for g in groups]
    intervals = [b - a for a, b in itertools.pairwise(starts)]
    # The newest record of a batch was written at most this long before the batch's first delivery.
    delays = [g[0].arrival - max(a.written for a in g) for g in groups]
    spreads = [(g[-1].arrival - g[0].arrival) / (len(g) - 1) for g in groups if len(g) > 1]
    return {
        "count": len(groups),
        "records_mean": round(len(ordered) / len(groups), 1),
        "interval_ms_mean": round(1000 * sum(intervals) / len(intervals), 1),
        "newest_write_to_first_delivery_ms_mean": round(1000 * sum(delays) / len(delays), 1),
        "per_message_ms_mean": round(1000 * sum(spreads) / len(spreads), 2) if spreads else 0.0,
    }


def read_calls(path: Path | None) -> list[tuple[float, float]]:
    """(started, ended) of every GetRecords the endpoint served, in order of start (bench.timed_moto's log)."""
    if path is None or not path.exists():
        return []
    calls = []
    for line in path.read_text(encoding="ascii").splitlines():
        started, _, ended = line.partition(" ")
        if ended:
            calls.append((float(started), float(ended)))
    return sorted(calls)


def parts(arrivals: list[Arrival], calls: list[tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Each record's latency in three parts, from the GetRecords that returned it.

    That read is taken to be the first to start after the write and to end before the arrival (the write's own
    request takes a few milliseconds, so a read starting during it may miss the record: the error is that small).
    `wait`: write -> the read's start (the poll interval, and reads queued behind slow ones); `endpoint`: the
    read itself (moto spends milliseconds of CPU per record; AWS tens of milliseconds per call); `service`: the
    read's end -> arrival (the KCL, the multilang hop, the child, the sink), the part this service owns.
    """
    starts = [started for started, _ in calls]
    split: dict[str, list[float]] = {"wait": [], "endpoint": [], "service": []}
    for a in arrivals:
        index = bisect.bisect_left(starts, a.written)
        if index >= len(calls) or calls[index][1] > a.arrival:
            continue  # no read both after the write and before the arrival: not attributable, never guessed
        started, ended = calls[index]
        split["wait"].append((started - a.written) * 1000)
        split["endpoint"].append((ended - started) * 1000)
        split["service"].append((a.arrival - ended) * 1000)
    if not split["service"]:
        return {}
    out = {name: {f"p{q}": round(percentile(values, q), 1) for q in (50, 95, 99)} for name, values in split.items()}
    out["attributed"] = {"records": len(split["service"]), "of": len(arrivals)}
    return out


def _cdf(values: list[float], points: int = 200) -> list[float]:
    """The latencies at `points` evenly spaced quantiles: enough for a plot, small enough for the JSON."""
    if not values:
        return []
    ordered = sorted(values)
    return [round(ordered[min(len(ordered) - 1, int(i / points * len(ordered)))], 2) for i in range(points + 1)]


@dataclass(frozen=True)
class Setting:
    """One service configuration the latency phases run under."""

    poll_interval_ms: int
    parallelization_factor: int
    rates: tuple[float, ...]


def measure(
    new_table: Callable[[], str],
    endpoint: str,
    workdir: Path,
    *,
    settings: list[Setting],
    seconds: float,
    watch: tuple[int, ...] = (),
    get_records_log: Path | None = None,
) -> dict[str, Any]:
    runs = []
    for number, setting in enumerate(settings):
        runs.append(
            _run(
                new_table(),  # a table per run: a new application reads its stream from the start
                endpoint,
                workdir / f"run{number}",
                setting,
                seconds=seconds,
                watch=watch,
                get_records_log=get_records_log,
            )
        )
    return {"runs": runs, "sink": "webhook (plain format) to a loopback HTTP receiver in its own process"}


def _run(
    table: str,
    endpoint: str,
    workdir: Path,
    setting: Setting,
    *,
    seconds: float,
    watch: tuple[int, ...],
    get_records_log: Path | None,
) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    receiver = start_receiver(workdir)
    sink = {"type": "webhook", "name": "hook", "url": receiver.url, "timeout_seconds": 10}
    config = service_config(
        unique("bench-latency"), table, endpoint, poll_interval_ms=setting.poll_interval_ms, sinks=[sink]
    )
    config["delivery"] = {
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 0.5,
        "parallelization_factor": setting.parallelization_factor,
    }
    phases: list[Phase] = []
    try:
        with service(config, workdir / "service") as (process, _log):
            tree = Tree(process.pid, watch)
            _warm_up(endpoint, table, receiver, process)
            for rate in setting.rates:
                phase = _phase(
                    endpoint, table, receiver, tree, rate=rate, seconds=seconds, prefix=f"{workdir.name}-{len(phases)}-"
                )
                phases.append(phase)
            rss = peaks(tree)
    finally:
        receiver.stop()
    calls = read_calls(get_records_log)
    for phase in phases:
        phase.parts = parts(phase.arrivals, calls)
    return {
        "poll_interval_ms": setting.poll_interval_ms,
        "parallelization_factor": setting.parallelization_factor,
        "phases": [p.as_dict() for p in phases],
        "peak_rss_mib": rss,
    }


def write(endpoint: str, table: str, *, rate: float, seconds: float, prefix: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bench.writer", "--endpoint", endpoint, "--table", table]
    command += ["--rate", str(rate), "--seconds", str(seconds), "--prefix", prefix]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=local_env(), cwd=Path(__file__).parent.parent
    )


def _warm_up(endpoint: str, table: str, receiver: Receiver, process: subprocess.Popen[bytes]) -> None:
    """Until one record went all the way through: the lease is taken, the child runs, the JIT has started."""
    deadline = time.monotonic() + WARMUP_TIMEOUT
    while time.monotonic() < deadline:
        write(endpoint, table, rate=2, seconds=1, prefix="warm").communicate(timeout=60)
        if any(a.key.startswith("warm") for a in receiver.arrivals()):
            time.sleep(2)  # let the first batches' JIT compilation and imports settle
            return
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode} during the warm-up")
        time.sleep(0.5)
    raise RuntimeError(f"no warm-up record arrived within {WARMUP_TIMEOUT:.0f} s")


def _phase(
    endpoint: str, table: str, receiver: Receiver, tree: Tree, *, rate: float, seconds: float, prefix: str
) -> Phase:
    before = tree.sample(time.time())
    writer = write(endpoint, table, rate=rate, seconds=seconds, prefix=prefix)
    while writer.poll() is None:
        tree.sample(time.time())  # keeps each process's peak RSS current
        time.sleep(0.5)
    stdout, _ = writer.communicate()
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    deadline = time.monotonic() + ARRIVAL_TIMEOUT
    mine: list[Arrival] = []
    while time.monotonic() < deadline:
        mine = [a for a in receiver.arrivals() if a.key.startswith(prefix)]
        if len(mine) >= report["written"]:
            break
        tree.sample(time.time())
        time.sleep(0.2)
    after = tree.sample(time.time())
    return Phase(
        target_rate=rate,
        seconds=seconds,
        written=report["written"],
        achieved_rate=report["achieved_rate"],
        writer_late_p50_ms=report["late_p50_ms"],
        writer_late_p95_ms=report["late_p95_ms"],
        writer_threads=report["threads"],
        writer_batch=report["batch"],
        delivered=len(mine),
        latencies_ms=[(a.arrival - a.written) * 1000 for a in mine],
        cpu_seconds=window(before, after),
        batches=batches(mine),
        arrivals=mine,
    )
