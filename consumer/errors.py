"""Every error the service raises on purpose, in one tree.

    ConsumerError
    ├── ConfigError              invalid configuration; carries every problem with its field path
    ├── FilterPatternError       a filter pattern Lambda would reject (also a ValueError, for pydantic's validators)
    ├── StartupError             the environment cannot run the service (Java, jars, endpoint, table, stream)
    ├── ImportRefusedError       an event source mapping `import-esm` cannot turn into a configuration
    ├── DecodeError              a stream record that is not a valid DynamoDB Streams record
    ├── DeliveryError            a sink could not take an event; `retry_after`: when the destination asked to be
    │   │                        called again, in seconds (None: it did not say)
    │   ├── TransientDeliveryError   worth retrying (timeouts, throttling, 5xx)
    │   │   ├── ThrottledError           the destination asked us to slow down (HTTP 429, Throttling codes)
    │   │   │   └── TooManyRequestsError     HTTP 429 (also a RetryAfterError)
    │   │   ├── RetryAfterError          an HTTP status worth retrying, with the endpoint's Retry-After
    │   │   ├── NotSentError             held back behind an earlier failure of its batch: not an attempt
    │   │   └── FunctionError            a handler failed its invocation: retried, but a record may be the cause
    │   ├── PermanentDeliveryError   retrying cannot help (validation, 4xx, oversize)
    │   │   └── RecordTooOldError        older than the sink's max_record_age_seconds
    │   └── UndeliveredError         records that could be neither delivered nor dead-lettered
    └── CheckpointError          the KCL refused a checkpoint
        ├── LeaseLostError           the lease moved to another worker: stop, never retry
        └── CheckpointRetryableError a lease-table hiccup: back off and retry
            └── CheckpointThrottledError the lease table throttled the checkpoint (counted as throttling)

    StopRequestedError           not an error but a signal: the service is stopping, leave the batch unsettled

Policy code branches on these types, never on message text. Foreign exceptions become these types where they
enter, each library through one function: botocore's through consumer.clients (`delivery_error` for sinks,
`dead_letter_error` for destinations; a start-up check turns its own into a StartupError that names what it
checked, reading the code with `error_code`), httpx's through the webhook sink's `_delivery_error`, and kclpy's
checkpoint refusals through consumer.checkpoint's `error_from_kcl` (called by the processor around kclpy's
checkpointer).

A few private exceptions (the decoder's _MalformedError, the webhook's address checks, the handler worker's
overrun signals, the Lambda runtime's _MarshalError) carry control flow inside their module and never leave it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ConsumerError(Exception):
    """Base of every error raised on purpose by this package."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ConsumerError):
    def __init__(self, problems: list[ConfigProblem], source: str = "configuration") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{source} is invalid ({len(problems)} problem(s)):\n{lines}")


class FilterPatternError(ConsumerError, ValueError):
    """A filter pattern Lambda would reject; the message starts with where in the pattern the problem is."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


class StartupError(ConsumerError):
    """The service cannot start; the message is one line that names the cause."""


class ImportRefusedError(ConsumerError):
    """`consumer import-esm` cannot translate the mapping it was given; the message is one line that says why."""


class DecodeError(ConsumerError):
    """The record's bytes are not a DynamoDB Streams record this service understands."""


class DeliveryError(ConsumerError):
    """A sink could not take an event."""

    # Seconds the destination asked us to wait before calling again (a Retry-After), believed within a cap.
    retry_after: float | None = None


class TransientDeliveryError(DeliveryError):
    """Retrying later may succeed."""


class ThrottledError(TransientDeliveryError):
    """The destination refused for rate: counted apart, since it calls for capacity rather than a fix."""


class RetryAfterError(TransientDeliveryError):
    """The endpoint answered with a status worth retrying; `retry_after` is its Retry-After in seconds, if any."""

    def __init__(self, message: str, status: int, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class TooManyRequestsError(RetryAfterError, ThrottledError):
    """HTTP 429: retried like any RetryAfterError, and counted as throttling."""


class NotSentError(TransientDeliveryError):
    """The sink never sent this message: an earlier one of the batch failed, and this one must not overtake it.

    Not an attempt at the message: it costs none of its retries.
    """


class FunctionError(TransientDeliveryError):
    """A Lambda handler's invocation failed (Lambda's function error).

    It raised anything (SystemExit included), ran past its timeout, its worker process died or outgrew an enforced
    memory limit, or its response was not JSON.

    Retried like any transient error, since Lambda retries such a batch; but unlike an outage, one record of the
    batch may be what the handler chokes on, so `bisect_batch_on_error` splits the batch on it.
    """


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot succeed."""


class RecordTooOldError(PermanentDeliveryError):
    """The record is older than the sink's max_record_age_seconds."""


class UndeliveredError(DeliveryError):
    """Records that could be neither delivered nor dead-lettered."""

    def __init__(self, sink: str, sequence_numbers: Sequence[str], cause: BaseException) -> None:
        self.sink = sink
        self.sequence_numbers = tuple(sequence_numbers)
        self.cause = cause
        super().__init__(f"{sink}: {len(sequence_numbers)} record(s) undelivered: {type(cause).__name__}: {cause}")


class StopRequestedError(Exception):
    """The service is stopping: the batch is left unsettled (not checkpointed) and read again after the restart.

    Not a ConsumerError: nothing failed, and code that gives up on any error must not swallow it.
    """


class CheckpointError(ConsumerError):
    """The KCL refused a checkpoint."""


class LeaseLostError(CheckpointError):
    """This worker no longer holds the shard's lease."""


class CheckpointRetryableError(CheckpointError):
    """Throttling or a transient lease-table problem."""


class CheckpointThrottledError(CheckpointRetryableError):
    """The lease table throttled the checkpoint: retried like any retryable refusal, and counted as throttling."""
