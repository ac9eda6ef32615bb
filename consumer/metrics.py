"""The Prometheus metrics the record-processor children write and the supervisor serves.

Each shard lease runs in its own child process, so prometheus-client runs in multiprocess mode: the supervisor
points PROMETHEUS_MULTIPROC_DIR at a directory of its own (wiped at every start) before the JVM starts the
children, each child writes its values there, and the supervisor's /metrics aggregates them. The registry is
injected so that tests read the values without that machinery.

Names follow the Prometheus naming guide (base units, `_total` counters). No label carries a shard id or a
sequence number: their number grows without bound. The worker is told apart by the scrape target's labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "dynamodb_consumer"

# Seconds: from a local sink's milliseconds to a webhook that gives up after its timeout.
_SINK_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Seconds: a healthy stream is under a second behind; the tail covers a day's backlog (the stream keeps 24 h).
_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)


class ProcessorMetrics:
    """What a record-processor child counts, for one table."""

    def __init__(self, registry: CollectorRegistry, table: str) -> None:
        self.table = table
        self.records_received = Counter(
            f"{PREFIX}_records_received",
            "Records read from the stream.",
            ["table", "event_name"],
            registry=registry,
        )
        self.records_filtered = Counter(
            f"{PREFIX}_records_filtered",
            "Records no route took (dropped).",
            ["table", "event_name"],
            registry=registry,
        )
        self.records_undecodable = Counter(
            f"{PREFIX}_records_undecodable",
            "Records that could not be decoded.",
            ["table"],
            registry=registry,
        )
        self.deliveries = Counter(
            f"{PREFIX}_deliveries",
            "Messages settled per sink: delivered, or dead-lettered to the on-failure destination.",
            ["table", "sink", "event_name", "outcome"],
            registry=registry,
        )
        self.sink_retries = Counter(
            f"{PREFIX}_sink_retries",
            "Delivery attempts after the first.",
            ["table", "sink"],
            registry=registry,
        )
        self.sink_request_duration = Histogram(
            f"{PREFIX}_sink_request_duration_seconds",
            "Duration of one call to a sink (one attempt at a batch).",
            ["table", "sink"],
            buckets=_SINK_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size_records",
            "Records per batch handed to a record processor.",
            ["table"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.lag = Histogram(
            f"{PREFIX}_lag_seconds",
            "From a record's creation in the stream to the moment it was settled.",
            ["table"],
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.max_lag = Gauge(
            f"{PREFIX}_max_lag_seconds",
            "Largest lag in the last batch of each shard, the maximum over shards.",
            ["table"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.behind_latest = Gauge(
            f"{PREFIX}_behind_latest_seconds",
            "The KCL's MillisBehindLatest of the last batch, in seconds, the maximum over shards.",
            ["table"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.checkpoints = Counter(
            f"{PREFIX}_checkpoints",
            "Checkpoints written to, or refused by, the lease table.",
            ["table", "outcome"],
            registry=registry,
        )
        self.leases_held = Gauge(
            f"{PREFIX}_leases_held",
            "Shard leases this worker is processing.",
            ["table"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.throttles = Counter(
            f"{PREFIX}_throttles",
            "Requests refused for rate (a sink's HTTP 429 or Throttling error, or a throttled checkpoint).",
            ["table", "operation"],
            registry=registry,
        )

    def settled(self, created: Sequence[datetime], now: datetime) -> None:
        if not created:
            return
        lags = [max(0.0, (now - moment).total_seconds()) for moment in created]
        for lag in lags:
            self.lag.labels(self.table).observe(lag)
        self.max_lag.labels(self.table).set(max(lags))


class SupervisorMetrics:
    """What only the supervisor sees: the engine process, its readiness, the children coming and going, the
    gaps the engine found in the stream (before any child is involved), and moves from one stream to the next.

    Children are counted here rather than by themselves: a child killed by a signal cannot count its own end.
    """

    def __init__(self, registry: CollectorRegistry, table: str) -> None:
        self.table = table
        self.engine_up = Gauge(f"{PREFIX}_engine_up", "1 while the KCL JVM runs.", registry=registry)
        self.ready = Gauge(f"{PREFIX}_ready", "1 once the KCL scheduler has started.", registry=registry)
        self.child_starts = Counter(
            f"{PREFIX}_child_starts",
            "Record-processor child processes started (one per shard lease taken).",
            ["table"],
            registry=registry,
        )
        self.child_crashes = Counter(
            f"{PREFIX}_child_crashes",
            "Record-processor child processes that ended abnormally (an error, or killed).",
            ["table"],
            registry=registry,
        )
        self.trimmed_gaps = Counter(
            f"{PREFIX}_trimmed_gaps",
            "Shard positions found older than the stream's retention: records lost before they were read.",
            ["table"],
            registry=registry,
        )
        self.stream_switches = Counter(
            f"{PREFIX}_stream_switches",
            "Moves from a drained stream to the table's next one (the stream was disabled and enabled again).",
            ["table"],
            registry=registry,
        )
