"""Route a decoded batch and hand each sink its messages; return only when every message is settled.

Settled means the sink accepted it, or it went to the on-failure destination. Per sink, a policy says how often
to retry (exponential backoff with full jitter, a cap, and a server's Retry-After), how old a record may get,
and whether to bisect a batch the sink refused as a whole for a reason a record can cause (a permanent refusal or
a handler's function error; never an outage). Permanent errors skip the retries. Without an on-failure
destination, whatever cannot be delivered is raised, so the caller never checkpoints past it.
"""

from __future__ import annotations

import contextvars
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from prometheus_client import CollectorRegistry

from consumer import backoff
from consumer.config import DeliveryPolicy
from consumer.deadletter import DeadLetter, Destination, now
from consumer.errors import (
    DeliveryError,
    FunctionError,
    NotSentError,
    PermanentDeliveryError,
    RecordTooOldError,
    StopRequestedError,
    ThrottledError,
    UndeliveredError,
)
from consumer.events import ChangeEvent
from consumer.jsontext import item_key
from consumer.metrics import ProcessorMetrics
from consumer.router import Router
from consumer.sinks.base import Failure, Message, Sink

log = structlog.get_logger("consumer.delivery")

_RETRY_AFTER_CAP_SECONDS = 60.0
_DEAD_LETTER_ATTEMPTS = 5
_DEAD_LETTER_BASE_SECONDS = 0.5
_DEAD_LETTER_MAX_SECONDS = 10.0
_STOP_CHECK_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    # Eight attempts, about half a minute of waiting in the worst case: rides out a short outage.
    max_attempts: int = 8  # 0: until the record is older than max_record_age
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 10.0
    max_record_age: timedelta | None = None
    bisect: bool = False
    lanes: int = 1

    @classmethod
    def from_config(cls, policy: DeliveryPolicy) -> RetryPolicy:
        return cls(
            max_attempts=0 if policy.max_retry_attempts < 0 else policy.max_retry_attempts + 1,
            base_delay_seconds=policy.backoff_base_seconds,
            max_delay_seconds=policy.backoff_max_seconds,
            max_record_age=(
                None if policy.max_record_age_seconds < 0 else timedelta(seconds=policy.max_record_age_seconds)
            ),
            bisect=policy.bisect_batch_on_error,
            lanes=policy.parallelization_factor,
        )

    def delay(self, attempt: int) -> float:
        return backoff.full_jitter(attempt, self.base_delay_seconds, self.max_delay_seconds)

    def exhausted(self, attempts: int) -> bool:
        return self.max_attempts > 0 and attempts >= self.max_attempts


class Pipeline:
    def __init__(
        self,
        router: Router,
        sinks: Sequence[Sink],
        retry: RetryPolicy | Mapping[str, RetryPolicy] | None = None,
        *,
        dead_letters: Callable[[Sequence[DeadLetter]], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = now,
        stopping: Callable[[], bool] = lambda: False,
        metrics: ProcessorMetrics | None = None,
    ) -> None:
        self._router = router
        self._metrics = metrics or ProcessorMetrics(CollectorRegistry(), "")
        self._stopping = stopping
        self.sinks = tuple(sinks)
        default = RetryPolicy()
        if isinstance(retry, Mapping):
            self._policies = {sink.name: retry.get(sink.name, default) for sink in self.sinks}
        else:
            self._policies = {sink.name: retry or default for sink in self.sinks}
        self._dead_letters = dead_letters
        self._sleep = sleep
        self._clock = clock

    def deliver(self, batch: Sequence[ChangeEvent]) -> None:
        """Return once every message is delivered or dead-lettered; raise UndeliveredError otherwise."""
        if not batch:
            return
        routed = self._router.route(batch)
        if routed.unmatched:
            log.debug("events matched no route", count=routed.unmatched)
        for event in routed.dropped:
            self._metrics.records_filtered.labels(self._metrics.table, event.event_name.value).inc()
        started = self._clock()
        failed = [
            DeadLetter(
                f.message.route, None, f.error, 0, started, started, f.message.event.sequence_number, f.message.event
            )
            for f in routed.unrenderable
        ]
        if failed:
            self._settle_failures(failed, "router")
        for sink in self.sinks:
            messages = routed.by_sink.get(sink.name)
            if messages:
                letters = self._deliver_in_lanes(sink, messages, self._policies[sink.name])
                if letters:
                    self._settle_failures(letters, f"sink {sink.name!r}")

    def _settle_failures(self, letters: Sequence[DeadLetter], where: str) -> None:
        for letter in letters:
            log.warning(
                "record not delivered",
                route=letter.route,
                sink=letter.sink,
                attempts=letter.attempts,
                sequence_number=letter.sequence_number,
                error=str(letter.error),
                error_type=type(letter.error).__name__,
                dead_lettered=self._dead_letters is not None,
            )
        if self._dead_letters is None:
            raise UndeliveredError(where, [letter.sequence_number for letter in letters], letters[0].error)
        self._dead_letters(letters)
        for letter in letters:
            event_name = letter.event.event_name.value if letter.event is not None else "unknown"
            self._metrics.deliveries.labels(
                self._metrics.table, letter.sink or "none", event_name, "dead_lettered"
            ).inc()

    def _deliver_to(self, sink: Sink, batch: Sequence[Message], policy: RetryPolicy) -> list[DeadLetter]:
        """Deliver with retries; return what must be dead-lettered (in stream order)."""
        pending: list[Message] = list(batch)
        letters: list[DeadLetter] = []
        first = self._clock()
        attempts = 0
        # Per message: a message the sink held back behind an earlier failure (NotSentError) was not attempted, and
        # its retries are its own: a batch holding many refused records must not use them up for the rest.
        tried: Counter[int] = Counter()
        while pending:
            pending, too_old = self._split_too_old(pending, policy)
            letters += [
                self._letter(m, sink, RecordTooOldError("older than max_record_age_seconds"), tried[id(m)], first)
                for m in too_old
            ]
            if not pending:
                break
            attempts += 1
            if attempts > 1:
                self._metrics.sink_retries.labels(self._metrics.table, sink.name).inc()
            started = time.perf_counter()
            try:
                failures = sink.send(pending)
            except DeliveryError as error:
                whole: DeliveryError | None = error
                failures = []
            except Exception as error:
                log.exception("sink raised an untyped error", sink=sink.name)
                whole = PermanentDeliveryError(f"{type(error).__name__}: {error}")
                failures = []
            else:
                whole = None
            finally:
                self._metrics.sink_request_duration.labels(self._metrics.table, sink.name).observe(
                    time.perf_counter() - started
                )
            self._count_attempt(sink, pending, whole, failures)
            if whole is None and not failures:
                break
            if whole is not None and policy.bisect and len(pending) > 1 and _record_may_be_the_cause(whole):
                # Lambda's bisect: halves retried separately, the first settled before the second (per-key order).
                middle = len(pending) // 2
                log.info("bisecting a refused batch", sink=sink.name, size=len(pending), error=str(whole))
                return (
                    letters
                    + self._deliver_to(sink, pending[:middle], policy)
                    + self._deliver_to(sink, pending[middle:], policy)
                )
            errors = (
                {id(m): whole for m in pending} if whole is not None else {id(f.message): f.error for f in failures}
            )
            # A sink that held back every message it failed has said nothing about any of them: count it as tried.
            held_back_only = all(isinstance(e, NotSentError) for e in errors.values())
            for m in pending:
                if held_back_only or not isinstance(errors.get(id(m)), NotSentError):
                    tried[id(m)] += 1
            # Permanent errors skip the retries; the rest are retried until the policy runs out.
            retry = [m for m in pending if id(m) in errors and not isinstance(errors[id(m)], PermanentDeliveryError)]
            give_up = [m for m in pending if id(m) in errors and (m not in retry or policy.exhausted(tried[id(m)]))]
            letters += [self._letter(m, sink, errors[id(m)], tried[id(m)], first) for m in give_up]
            pending = [m for m in retry if m not in give_up]
            if not pending:
                break
            last_error = errors[id(pending[0])]
            # The first message left was held back behind one that is now settled (refused for good): nothing
            # failed that waiting would help.
            delay = (
                0.0 if isinstance(last_error, NotSentError) else _retry_delay(policy, tried[id(pending[0])], last_error)
            )
            log.warning(
                "delivery retry",
                sink=sink.name,
                pending=len(pending),
                attempt=attempts,
                delay_seconds=round(delay, 3),
                error=str(last_error),
            )
            self._wait(delay)
        return sorted(letters, key=lambda letter: int(letter.sequence_number))

    def _count_attempt(
        self, sink: Sink, pending: Sequence[Message], whole: DeliveryError | None, failures: Sequence[Failure]
    ) -> None:
        table = self._metrics.table
        errors = [whole] if whole is not None else [f.error for f in failures]
        if any(isinstance(error, ThrottledError) for error in errors):
            self._metrics.throttles.labels(table, sink.name).inc()
        if whole is not None:
            return
        refused = {id(f.message) for f in failures}
        delivered = Counter(m.event.event_name.value for m in pending if id(m) not in refused)
        for event_name, count in delivered.items():
            self._metrics.deliveries.labels(table, sink.name, event_name, "delivered").inc(count)

    def _deliver_in_lanes(self, sink: Sink, batch: Sequence[Message], policy: RetryPolicy) -> list[DeadLetter]:
        """Deliver, with the messages of one item key always in the same lane and in stream order."""
        if policy.lanes <= 1:
            return self._deliver_to(sink, batch, policy)
        lanes: dict[int, list[Message]] = {}
        for message in batch:
            lane = zlib.crc32(item_key(message.event.keys).encode("utf-8")) % policy.lanes
            lanes.setdefault(lane, []).append(message)
        if len(lanes) == 1:
            return self._deliver_to(sink, batch, policy)
        with ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix=f"lane-{sink.name}") as pool:
            # Each lane in a copy of this thread's context: its log lines, and a handler's, keep the shard_id.
            futures = [
                pool.submit(contextvars.copy_context().run, self._deliver_to, sink, messages, policy)
                for messages in lanes.values()
            ]
            results = [future.result() for future in futures]
        return sorted((letter for letters in results for letter in letters), key=lambda x: int(x.sequence_number))

    def _wait(self, delay: float) -> None:
        """Back off, but give up the batch as soon as the service is asked to stop: a graceful stop must not wait
        for a destination that is down (the batch is not checkpointed and is read again after the restart)."""
        remaining = delay
        while True:
            if self._stopping():
                raise StopRequestedError
            if remaining <= 0:
                return
            step = min(remaining, _STOP_CHECK_SECONDS)
            self._sleep(step)
            remaining -= step

    def _split_too_old(self, pending: list[Message], policy: RetryPolicy) -> tuple[list[Message], list[Message]]:
        if policy.max_record_age is None:
            return pending, []
        cutoff = self._clock() - policy.max_record_age
        fresh = [m for m in pending if m.event.approximate_creation >= cutoff]
        return fresh, [m for m in pending if m.event.approximate_creation < cutoff]

    def _letter(self, message: Message, sink: Sink, error: DeliveryError, attempts: int, first: datetime) -> DeadLetter:
        return DeadLetter(
            route=message.route,
            sink=sink.name,
            error=error,
            attempts=attempts,
            first_attempt=first,
            last_attempt=self._clock(),
            sequence_number=message.event.sequence_number,
            event=message.event,
        )

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def _record_may_be_the_cause(error: DeliveryError) -> bool:
    """Whether splitting the batch can help: a refusal of its content or a handler's error, not an outage.

    Splitting on a timeout, a 5xx or throttling only multiplies the calls to a destination that is down (a
    100-record batch becomes 199 calls before any retry) and holds the batch long enough to look stuck; such a
    batch is retried whole, with backoff.
    """
    return isinstance(error, PermanentDeliveryError | FunctionError)


def _retry_delay(policy: RetryPolicy, attempts: int, error: DeliveryError) -> float:
    delay = policy.delay(attempts - 1)
    # A server that says when to come back (429/503 Retry-After) is believed, within a cap.
    if error.retry_after is not None and error.retry_after > delay:
        delay = min(error.retry_after, _RETRY_AFTER_CAP_SECONDS)
    return delay


class DeadLetterWriter:
    """Stores dead letters in the destination, retrying a few times; raises when it cannot (never drops)."""

    def __init__(
        self,
        destination: Destination,
        render: Callable[[DeadLetter], str],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._destination = destination
        self._render = render
        self._sleep = sleep

    def __call__(self, letters: Sequence[DeadLetter]) -> None:
        bodies = [self._render(letter) for letter in letters]
        for attempt in range(_DEAD_LETTER_ATTEMPTS):
            try:
                self._destination.put(bodies)
            except DeliveryError as error:
                if isinstance(error, PermanentDeliveryError) or attempt + 1 == _DEAD_LETTER_ATTEMPTS:
                    sequence_numbers = [letter.sequence_number for letter in letters]
                    raise UndeliveredError(f"dead letters {self._destination.name}", sequence_numbers, error) from error
                self._sleep(backoff.exponential(attempt, _DEAD_LETTER_BASE_SECONDS, _DEAD_LETTER_MAX_SECONDS))
            else:
                log.warning(
                    "dead-lettered",
                    destination=self._destination.name,
                    count=len(bodies),
                    sequence_numbers=[letter.sequence_number for letter in letters],
                )
                return

    def close(self) -> None:
        self._destination.close()
