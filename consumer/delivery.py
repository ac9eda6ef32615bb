"""Hand a decoded batch to every sink and return only when each event is settled.

This first version retries transient failures a bounded number of times with capped exponential backoff and
full jitter; anything still failing is raised, so the caller never checkpoints past it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from consumer.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from consumer.events import ChangeEvent
from consumer.sinks.base import Sink

log = structlog.get_logger("consumer.delivery")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    # About half a minute of waiting in the worst case: rides out a short outage without restarting the worker.
    max_attempts: int = 8
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 10.0

    def delay(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog, "Exponential Backoff And Jitter").
        return random.uniform(0, min(self.max_delay_seconds, self.base_delay_seconds * 2**attempt))  # noqa: S311


class UndeliveredError(DeliveryError):
    """Some events could not be delivered to a sink after every allowed attempt."""

    def __init__(self, sink: str, events: Sequence[ChangeEvent], cause: DeliveryError) -> None:
        self.sink = sink
        self.events = tuple(events)
        self.cause = cause
        super().__init__(f"sink {sink!r}: {len(events)} event(s) undelivered: {type(cause).__name__}: {cause}")


class Pipeline:
    def __init__(
        self,
        sinks: Sequence[Sink],
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sinks = tuple(sinks)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    def deliver(self, batch: Sequence[ChangeEvent]) -> None:
        """Return once every sink has accepted every event; raise UndeliveredError otherwise."""
        if not batch:
            return
        for sink in self.sinks:
            self._deliver_to(sink, batch)

    def _deliver_to(self, sink: Sink, batch: Sequence[ChangeEvent]) -> None:
        pending: Sequence[ChangeEvent] = batch
        for attempt in range(self._retry.max_attempts):
            try:
                failures = sink.send(pending)
            except DeliveryError as error:
                last_error: DeliveryError = error
            except Exception as error:
                log.exception("sink raised an untyped error", sink=sink.name)
                last_error = PermanentDeliveryError(f"{type(error).__name__}: {error}")
            else:
                if not failures:
                    return
                pending = [failure.event for failure in failures]
                last_error = failures[0].error
            if isinstance(last_error, PermanentDeliveryError):
                break
            if attempt + 1 < self._retry.max_attempts:
                delay = self._retry.delay(attempt)
                log.warning(
                    "delivery retry",
                    sink=sink.name,
                    pending=len(pending),
                    attempt=attempt + 1,
                    delay_seconds=round(delay, 3),
                    error=str(last_error),
                )
                self._sleep(delay)
        if not isinstance(last_error, TransientDeliveryError | PermanentDeliveryError):
            last_error = TransientDeliveryError(str(last_error))
        raise UndeliveredError(sink.name, pending, last_error)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
