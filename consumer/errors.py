"""Every error the service raises on purpose, in one tree.

    ConsumerError
    ├── ConfigError              invalid configuration; carries every problem with its field path
    ├── StartupError             the environment cannot run the service (Java, jars, endpoint, table, stream)
    ├── ImportRefusedError       an event source mapping `import-esm` cannot turn into a configuration
    ├── DecodeError              a stream record that is not a valid DynamoDB Streams record
    ├── DeliveryError            a sink could not take an event
    │   ├── TransientDeliveryError   worth retrying (timeouts, throttling, 5xx)
    │   │   ├── ThrottledError           the destination asked us to slow down (HTTP 429, Throttling codes)
    │   │   └── FunctionError            a handler failed its invocation: retried, but a record may be the cause
    │   └── PermanentDeliveryError   retrying cannot help (validation, 4xx, oversize)
    └── CheckpointError          the KCL refused a checkpoint
        ├── LeaseLostError           the lease moved to another worker: stop, never retry
        └── CheckpointRetryableError throttling or a lease-table hiccup: back off and retry

Policy code branches on these types, never on message text.
"""

from __future__ import annotations

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


class StartupError(ConsumerError):
    """The service cannot start; the message is one line that names the cause."""


class ImportRefusedError(ConsumerError):
    """`consumer import-esm` cannot translate the mapping it was given; the message is one line that says why."""


class DecodeError(ConsumerError):
    """The record's bytes are not a DynamoDB Streams record this service understands."""


class DeliveryError(ConsumerError):
    """A sink could not take an event."""


class TransientDeliveryError(DeliveryError):
    """Retrying later may succeed."""


class ThrottledError(TransientDeliveryError):
    """The destination refused for rate: counted apart, since it calls for capacity rather than a fix."""


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


class CheckpointError(ConsumerError):
    """The KCL refused a checkpoint."""


class LeaseLostError(CheckpointError):
    """This worker no longer holds the shard's lease."""


class CheckpointRetryableError(CheckpointError):
    """Throttling or a transient lease-table problem."""
