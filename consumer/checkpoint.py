"""Checkpoint policy: kclpy checkpoint errors mapped to our types, retried where retrying can help."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import structlog

from consumer.errors import CheckpointError, CheckpointRetryableError, LeaseLostError

log = structlog.get_logger("consumer.checkpoint")

# Names the KCL sends back in a checkpoint reply (KCL exceptions' simple names).
_LEASE_LOST = {"ShutdownException"}
_RETRYABLE = {"ThrottlingException", "KinesisClientLibDependencyException"}
# Not retried: InvalidStateException means the lease table or the protocol is in a state a retry cannot fix
# (kclpy also raises it when the reply it read was not a checkpoint reply).


class Checkpointer(Protocol):
    """Writes a checkpoint; raises a CheckpointError subclass (see `classify`) when the KCL refuses it."""

    def checkpoint(self, sequence_number: str | None) -> None: ...


def classify(error_name: str) -> CheckpointError:
    if error_name in _LEASE_LOST:
        return LeaseLostError(error_name)
    if error_name in _RETRYABLE:
        return CheckpointRetryableError(error_name)
    return CheckpointError(error_name)


def checkpoint(
    checkpointer: Checkpointer,
    sequence_number: str | None,
    *,
    attempts: int = 6,
    base_delay_seconds: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
    on_throttle: Callable[[], None] = lambda: None,
) -> None:
    """Checkpoint at `sequence_number` (None: the end of the last batch the KCL delivered).

    Retries throttling and lease-table errors with exponential backoff; raises LeaseLostError at once.
    The sequence number is passed back as the exact string the KCL sent (never through int).
    """
    for attempt in range(attempts):
        try:
            checkpointer.checkpoint(sequence_number)
        except CheckpointRetryableError as error:
            if str(error) == "ThrottlingException":
                on_throttle()
            if attempt + 1 == attempts:
                raise
            delay = min(5.0, base_delay_seconds * 2**attempt)
            log.warning("checkpoint retry", error=str(error), attempt=attempt + 1, delay_seconds=delay)
            sleep(delay)
        else:
            return


def may_end_shard(*, given_up: bool, lease_lost: bool) -> bool:
    """Whether a child may write SHARD_END when the KCL reports the end of its shard.

    SHARD_END is the one checkpoint that moves past records the child never saw settled: it stands for every
    record of the shard. So it is written only if every record handed to the child was settled, and never after
    the lease was lost (the KCL would refuse it, and the new owner reads the shard from the last checkpoint).
    """
    return not given_up and not lease_lost
