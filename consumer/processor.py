"""The record-processor child the KCL starts for each shard lease: the only module that imports amazon_kclpy.

Run as `python -m consumer.processor`. stdout carries the multilang protocol, so the real stdout is kept
private for kclpy and file descriptor 1 is pointed at stderr: a stray print call (ours, or a user handler's)
lands in the log instead of corrupting the protocol.

kclpy acknowledges a batch even when process_records raised, which would silently skip it. So no exception
reaches kclpy: every decodable record is delivered before the checkpoint moves past it, and a batch that cannot
be delivered (or any unexpected error) ends this process with a non-zero status, which stops the JVM; the
orchestrator restarts the service and the records are read again from the last checkpoint. A record that cannot
be decoded is logged whole (its exact bytes) and passed over.
"""

from __future__ import annotations

import base64
import functools
import gc
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import structlog
from amazon_kclpy import kcl
from amazon_kclpy.checkpoint_error import CheckpointError as KclCheckpointError
from amazon_kclpy.v3 import processor as kcl_processor
from prometheus_client import REGISTRY, CollectorRegistry

from consumer.batching import BatchingWindow
from consumer.checkpoint import Checkpointer, Positions, checkpoint, error_from_kcl
from consumer.config import DEFAULT_BATCH_SIZE, Config
from consumer.deadletter import DeadLetter, build_destination, now
from consumer.deadletter import entry as dead_letter_entry
from consumer.decode import decode_record
from consumer.delivery import DeadLetterWriter, Pipeline, RetryPolicy
from consumer.environment import CHILDREN_DIR_ENV, EXIT_FAILED, EXIT_UNDELIVERED, RESOLVED_CONFIG_ENV, STOP_FILE_ENV
from consumer.errors import CheckpointError, DecodeError, LeaseLostError, StopRequestedError, UndeliveredError
from consumer.events import ChangeEvent, StreamContext
from consumer.health import ChildState
from consumer.logs import configure_logging
from consumer.metrics import ProcessorMetrics
from consumer.router import Router
from consumer.sinks import Sink, build_sink
from consumer.sinks.log import DryRunSink

GC_THRESHOLD_YOUNG = 10_000

log = structlog.get_logger("consumer.processor")


class _KclCheckpointer:
    """kclpy's checkpointer, raising our typed errors."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def checkpoint(self, sequence_number: str | None) -> None:
        try:
            self._raw.checkpoint(sequence_number)
        except KclCheckpointError as error:
            raise error_from_kcl(str(error.value)) from None


def _decided(method: Callable[..., None]) -> Callable[..., None]:
    """Let no exception reach kclpy, which would acknowledge the batch and so skip it.

    An unexpected error ends the child with a non-zero status instead: the JVM stops, the orchestrator restarts
    the service, and the records since the last checkpoint are read again.
    """

    @functools.wraps(method)
    def guarded(self: RecordProcessor, message: Any) -> None:
        try:
            method(self, message)
        except SystemExit:
            raise
        except Exception:
            log.exception(
                "unexpected error; exiting so the records are read again from the last checkpoint",
                action=method.__name__,
            )
            _exit(EXIT_FAILED)

    return guarded


class RecordProcessor(kcl_processor.RecordProcessorBase):  # type: ignore[misc]
    def __init__(
        self,
        pipeline: Pipeline,
        context: StreamContext,
        sleep: Callable[[float], None] = time.sleep,
        dead_letters: Callable[[Sequence[DeadLetter]], None] | None = None,
        *,
        metrics: ProcessorMetrics | None = None,
        state: ChildState | None = None,
        withhold_raw: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batching_window_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pipeline = pipeline
        self._batch_size = batch_size
        self._window = BatchingWindow(batch_size, batching_window_seconds)
        self._clock = clock
        self._context = context
        self._metrics = metrics or ProcessorMetrics(CollectorRegistry(), context.table)
        self._state = state
        self._withhold_raw = withhold_raw
        self._dead_letters = dead_letters
        self._sleep = sleep
        self._shard_id = "unknown"
        self._positions = Positions()

    @_decided
    def initialize(self, initialize_input: Any) -> None:
        self._shard_id = initialize_input.shard_id
        structlog.contextvars.bind_contextvars(shard_id=self._shard_id)
        self._metrics.leases_held.labels(self._metrics.table).set(1)
        log.info("shard started", start_after=initialize_input.sequence_number)

    @_decided
    def process_records(self, process_records_input: Any) -> None:
        records = process_records_input.records
        table = self._metrics.table
        moment = self._clock()
        if records:
            behind = process_records_input.millis_behind_latest
            if isinstance(behind, int | float):
                self._metrics.behind_latest.labels(table).set(behind / 1000)
            if not self._positions.accepts_records():
                # Stopping: not settled, never checkpointed, read again after the restart. Lease lost: another
                # worker reads this shard from our last checkpoint; these records are its to deliver.
                log.info("records left unsettled", count=len(records), lease_lost=self._positions.lease_lost)
                return
            self._metrics.batch_size.labels(table).observe(len(records))
            self._window.add(records, moment)
        elif not self._window.held:
            # The KCL hands empty reads over too (callProcessRecordsEvenForEmptyRecordList): nothing follows the
            # iterator, so the shard is caught up, and its gauges must not keep the lag of its last busy moment.
            # (The adapter reports no MillisBehindLatest for an empty read.)
            self._metrics.max_lag.labels(table).set(0)
            self._metrics.behind_latest.labels(table).set(0)
            return
        # Empty reads come every poll interval or two: they are the clock that closes a batching window.
        delivered = self._deliver(self._window.due(moment))
        if records and self._window.seconds > 0:
            log.debug("records held in the batching window", held=len(self._window.held))
        if delivered:
            position = self._positions.after_read()
            if position is not None:
                self._checkpoint(_KclCheckpointer(process_records_input.checkpointer), position)

    def _deliver(self, records: Sequence[Any]) -> bool:
        """Deliver records taken from the window, slice by slice; False if they were given up (stopping)."""
        self._positions.holding = bool(self._window.held)
        if not records:
            return True
        table = self._metrics.table
        first, last = records[0].sequence_number, records[-1].sequence_number
        structlog.contextvars.bind_contextvars(first_sequence=first, last_sequence=last)
        if self._state is not None:
            self._state.busy()
        created: list[datetime] = []
        try:
            # Slice by slice: a slice is decoded, routed and delivered to every sink before the next is decoded,
            # so a child holds one slice of decoded records, not the whole read (memory), and a handler sink sees
            # batches of at most `batch_size`, as under Lambda. The checkpoint waits for every slice.
            for start in range(0, len(records), self._batch_size):
                events = self._decode(records[start : start + self._batch_size])
                # One update per event name and slice: each is a write to the multiprocess file.
                for event_name, count in Counter(event.event_name.value for event in events).items():
                    self._metrics.records_received.labels(table, event_name).inc(count)
                try:
                    self._pipeline.deliver(events)
                except StopRequestedError:
                    # Left unsettled on purpose, and so is everything still held behind it: the final checkpoint
                    # (shutdown_requested) stays before this batch.
                    self._positions.give_up(stopping=True)
                    self._window.drop()
                    self._positions.holding = False
                    log.warning("stopping during delivery; the batch will be read again after the restart")
                    return False
                except UndeliveredError as error:
                    log.error(
                        "batch undelivered; exiting so the batch is read again from the last checkpoint",
                        sink=error.sink,
                        error=str(error.cause),
                        error_type=type(error.cause).__name__,
                        undelivered=list(error.sequence_numbers),
                    )
                    _exit(EXIT_UNDELIVERED)
                created += [event.approximate_creation for event in events]
            self._positions.settled(last)
            self._metrics.settled(created, now())
            return True
        finally:
            if self._state is not None:
                self._state.idle()
            structlog.contextvars.unbind_contextvars("first_sequence", "last_sequence")

    @_decided
    def lease_lost(self, lease_lost_input: Any) -> None:
        del lease_lost_input
        # Another worker owns the shard now; a checkpoint would be refused, and must not be attempted. Records
        # held in the batching window are its to deliver too: it reads on from our last checkpoint, before them.
        self._positions.lease_lost = True
        if self._window.held:
            log.info("held records left to the new owner", count=len(self._window.held))
            self._window.drop()
            self._positions.holding = False
        self._metrics.leases_held.labels(self._metrics.table).set(0)
        log.info("lease lost", last_settled=self._positions.last_settled)

    @_decided
    def shard_ended(self, shard_ended_input: Any) -> None:
        self._metrics.leases_held.labels(self._metrics.table).set(0)
        # The shard's last records may still be in the batching window: no later read will close it.
        if self._window.held:
            self._deliver(self._window.flush())
        if not self._positions.may_end_shard():
            # SHARD_END would hand the shard to its children and put the records given up behind the checkpoint
            # for good. Without it the bridge gives the lease up, and the shard is read again from its last
            # checkpoint (by this worker after a restart, or by another one).
            log.warning(
                "shard end not checkpointed: records of this shard were left unsettled",
                last_settled=self._positions.last_settled,
                lease_lost=self._positions.lease_lost,
            )
            return
        # The KCL starts the shard's children only after this checkpoint. If it cannot be written, exiting is the
        # only way out: the KCL would retry its shutdown task against a child that is already gone, and the
        # children would wait forever. After the restart the shard is read to its end again.
        self._counted_checkpoint(_KclCheckpointer(shard_ended_input.checkpointer), None)
        log.info("shard ended", last_settled=self._positions.last_settled)

    @_decided
    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        self._metrics.leases_held.labels(self._metrics.table).set(0)
        # Records held in the batching window are delivered before the final checkpoint, as a batch in hand would
        # be; a sink that needs a retry makes the child give them up instead (read again after the restart).
        if self._window.held:
            self._deliver(self._window.flush())
        position = self._positions.on_stop()
        if position is None:
            return
        # Sent even if the last batch's checkpoint covers it (the KCL then writes nothing): the final position is
        # on record before the child goes.
        self._checkpoint(_KclCheckpointer(shutdown_requested_input.checkpointer), position)
        log.info("shutdown requested; checkpoint written", checkpoint=self._positions.last_checkpointed)

    def _decode(self, records: Sequence[Any]) -> list[ChangeEvent]:
        events = []
        undecodable: list[DeadLetter] = []
        for record in records:
            try:
                events.append(decode_record(record.binary_data, self._context))
            except DecodeError as error:
                self._metrics.records_undecodable.labels(self._metrics.table).inc()
                moment = now()
                undecodable.append(
                    DeadLetter(
                        None, None, error, 0, moment, moment, record.sequence_number, raw_data=record.binary_data
                    )
                )
                if self._dead_letters is None:
                    # No on-failure destination: the log line carries the exact bytes the KCL sent (base64), so
                    # the record can be recovered from the log stream, unless attributes are redacted from the
                    # log: bytes that cannot be decoded cannot be redacted either.
                    log.error(
                        "undecodable record passed over",
                        error=str(error),
                        sequence_number=record.sequence_number,
                        **(
                            {"data_withheld": "log_redact is set", "data_bytes": len(record.binary_data)}
                            if self._withhold_raw
                            else {"data_base64": base64.b64encode(record.binary_data).decode("ascii")}
                        ),
                    )
        if undecodable and self._dead_letters is not None:
            self._dead_letters(undecodable)  # raises (and so stops the child) if it cannot store them
        return events

    def _checkpoint(self, checkpointer: Checkpointer, sequence_number: str) -> None:
        try:
            self._counted_checkpoint(checkpointer, sequence_number)
        except LeaseLostError:
            self._positions.lease_lost = True
            log.warning("checkpoint refused: lease lost", sequence_number=sequence_number)
            return
        self._positions.written(sequence_number)

    def _counted_checkpoint(self, checkpointer: Checkpointer, sequence_number: str | None) -> None:
        table = self._metrics.table
        try:
            checkpoint(
                checkpointer,
                sequence_number,
                sleep=self._sleep,
                on_throttle=lambda: self._metrics.throttles.labels(table, "checkpoint").inc(),
            )
        except CheckpointError:
            self._metrics.checkpoints.labels(table, "failed").inc()
            raise
        self._metrics.checkpoints.labels(table, "written").inc()


def _exit(status: int) -> None:
    # SystemExit passes through kclpy's handler (any other exception would be swallowed and the batch acknowledged).
    raise SystemExit(status)


def load_resolved_config(path: str | Path) -> Config:
    return Config.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


def main() -> int:
    # Signals are for the JVM: it asks this child to checkpoint and stop through the protocol. A SIGTERM or Ctrl-C
    # reaching the child directly would otherwise kill it first and lose the final checkpoint.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    protocol_out = _take_stdout()
    config_path = os.environ.get(RESOLVED_CONFIG_ENV)
    if not config_path:
        sys.stderr.write(
            f"consumer.processor: {RESOLVED_CONFIG_ENV} is not set; start the service with `consumer run`\n"
        )
        return 2
    config = load_resolved_config(config_path)
    configure_logging(config.log_level, redact=config.log_redact)
    # First thing: from here on, an end without ended(clean=True) is counted as a crash by the supervisor.
    children_dir = os.environ.get(CHILDREN_DIR_ENV)
    state = ChildState(Path(children_dir)) if children_dir else None
    if config.source.stream_arn is None:
        sys.stderr.write("consumer.processor: the resolved configuration has no stream ARN\n")
        return 2
    context = StreamContext(
        stream_arn=config.source.stream_arn, region=config.source.region, endpoint_url=config.source.endpoint_url
    )
    sinks: list[Sink] = [
        DryRunSink(sink.name, sink.type) if config.dry_run else build_sink(sink, context) for sink in config.sinks
    ]
    writer = None
    if config.on_failure is not None:
        destination = build_destination(config.on_failure, context)
        writer = DeadLetterWriter(
            destination, lambda letter: dead_letter_entry(letter, config.application_name, context)
        )
    policies = {sink.name: RetryPolicy.from_config(sink.delivery or config.delivery) for sink in config.sinks}
    stop_file = os.environ.get(STOP_FILE_ENV)
    # The supervisor set PROMETHEUS_MULTIPROC_DIR: these values land in its directory, for its /metrics.
    metrics = ProcessorMetrics(REGISTRY, context.table)
    pipeline = Pipeline(
        Router.from_config(config, context),
        sinks,
        policies,
        dead_letters=writer,
        stopping=Path(stop_file).exists if stop_file else (lambda: False),
        metrics=metrics,
    )
    processor = RecordProcessor(
        pipeline,
        context,
        dead_letters=writer,
        metrics=metrics,
        state=state,
        withhold_raw=bool(config.log_redact),
        batch_size=config.source.batch_size,
        batching_window_seconds=config.source.maximum_batching_window_seconds,
    )
    tune_garbage_collector()
    clean = False
    try:
        kcl.KCLProcess(processor, output_file=protocol_out).run()
        clean = True
    finally:
        pipeline.close()
        if writer is not None:
            writer.close()
        if state is not None:
            state.ended(clean=clean)
    return 0


def tune_garbage_collector() -> None:
    """Collect cycles less often than CPython's default (every 700 allocations).

    A batch of 1000 records is some 100,000 containers alive at once, none of them in a cycle, and the default
    thresholds traversed them again and again: 35-40 % of the child's CPU while draining (measured with the
    benchmarks' in-process driver). What was loaded at start (modules, configuration) is frozen out of the
    collections altogether.
    """
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD_YOUNG, 50, 100)


def _take_stdout() -> TextIO:
    """Keep the real stdout for the protocol and send everything else written to fd 1 to stderr."""
    sys.stdout.flush()
    protocol_out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol_out


if __name__ == "__main__":
    raise SystemExit(main())
