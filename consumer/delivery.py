"""Route a decoded batch and hand each sink its messages; return only when every message is settled.

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
from consumer.router import Router
from consumer.sinks.base import Message, Sink

log = structlog.get_logger("consumer.delivery")

_RETRY_AFTER_CAP_SECONDS = 60.0


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
    """Some messages could not be delivered to a sink after every allowed attempt."""

    def __init__(self, sink: str, messages: Sequence[Message], cause: DeliveryError) -> None:
        self.sink = sink
        self.messages = tuple(messages)
        self.cause = cause
        super().__init__(f"sink {sink!r}: {len(messages)} message(s) undelivered: {type(cause).__name__}: {cause}")


class Pipeline:
    def __init__(
        self,
        router: Router,
        sinks: Sequence[Sink],
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._router = router
        self.sinks = tuple(sinks)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    def deliver(self, batch: Sequence[ChangeEvent]) -> None:
        """Return once every sink has accepted every message routed to it; raise UndeliveredError otherwise."""
        if not batch:
            return
        routed = self._router.route(batch)
        if routed.unmatched:
            log.debug("events matched no route", count=routed.unmatched)
        if routed.unrenderable:
            first = routed.unrenderable[0]
            raise UndeliveredError(
                f"route {first.message.route}", [f.message for f in routed.unrenderable], first.error
            )
        for sink in self.sinks:
            messages = routed.by_sink.get(sink.name)
            if messages:
                self._deliver_to(sink, messages)

    def _deliver_to(self, sink: Sink, batch: Sequence[Message]) -> None:
        pending: Sequence[Message] = batch
        for attempt in range(self._retry.max_attempts):
            try:
                failures = sink.send(pending)
            except DeliveryError as error:
                last_error: DeliveryError = error
            except Exception as error:  # a sink's own bug must not escape as "delivered"
                log.exception("sink raised an untyped error", sink=sink.name)
                last_error = PermanentDeliveryError(f"{type(error).__name__}: {error}")
            else:
                if not failures:
                    return
                pending = [failure.message for failure in failures]
                permanent = [f for f in failures if isinstance(f.error, PermanentDeliveryError)]
                last_error = (permanent or failures)[0].error
            if isinstance(last_error, PermanentDeliveryError):
                break
            if attempt + 1 < self._retry.max_attempts:
                delay = self._retry.delay(attempt)
                # A server that says when to come back (429/503 Retry-After) is believed, within a cap.
                retry_after = getattr(last_error, "retry_after", None)
                if isinstance(retry_after, int | float) and retry_after > delay:
                    delay = min(float(retry_after), _RETRY_AFTER_CAP_SECONDS)
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
