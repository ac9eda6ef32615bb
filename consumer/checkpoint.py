"""Checkpoint policy: the KCL's refusals mapped to our types, retried where retrying can help."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import structlog

from consumer import backoff
from consumer.errors import CheckpointError, CheckpointRetryableError, CheckpointThrottledError, LeaseLostError

log = structlog.get_logger("consumer.checkpoint")

_MAX_DELAY_SECONDS = 5.0

# Names the KCL sends back in a checkpoint reply (KCL exceptions' simple names).
_LEASE_LOST = {"ShutdownException"}
_THROTTLED = {"ThrottlingException"}
_RETRYABLE = {"KinesisClientLibDependencyException"}
# Not retried: InvalidStateException means the lease table or the protocol is in a state a retry cannot fix
# (kclpy also raises it when the reply it read was not a checkpoint reply).


class Checkpointer(Protocol):
    """Writes a checkpoint; raises a CheckpointError subclass (see `error_from_kcl`) when the KCL refuses it."""

    def checkpoint(self, sequence_number: str | None) -> None: ...


def error_from_kcl(error_name: str) -> CheckpointError:
    """Our error for the name of the exception the KCL refused a checkpoint with (kclpy's CheckpointError.value)."""
    if error_name in _LEASE_LOST:
        return LeaseLostError(error_name)
    if error_name in _THROTTLED:
        return CheckpointThrottledError(error_name)
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
            if isinstance(error, CheckpointThrottledError):
                on_throttle()
            if attempt + 1 == attempts:
                raise
            delay = backoff.exponential(attempt, base_delay_seconds, _MAX_DELAY_SECONDS)
            log.warning("checkpoint retry", error=str(error), attempt=attempt + 1, delay_seconds=delay)
            sleep(delay)
        else:
            return


class Positions:
    """Where a shard's child may checkpoint: the one place that answers "may I checkpoint here?".

    Every checkpoint a child writes goes through one of three questions, each answered from what the child saw:

    - `after_read()`: once every record of a read is settled (accepted by its sinks or stored in the on-failure
      destination), its last sequence number; before that, nothing.
    - `on_stop()`: on a requested shutdown, the last settled sequence number again (never a record given up).
    - `may_end_shard()`: SHARD_END stands for every record of the shard, so only if no record handed to this
      child was left unsettled or is still held in the batching window, and the lease is still held.

    Records held in the batching window (`holding`) are not settled: `last_settled` only moves when a batch taken
    from the window, in stream order, is settled, so every answer stays before the records still held.

    Nothing is ever checkpointed after the lease is lost: the new owner reads on from the last checkpoint.
    """

    def __init__(self) -> None:
        self.last_settled: str | None = None
        self.last_checkpointed: str | None = None
        self.lease_lost = False
        self.stopping = False
        # Records were handed to this child and not settled: nothing may be checkpointed past them.
        self.given_up = False
        # Records are held in the batching window, after last_settled, waiting for their batch to fill or close.
        self.holding = False

    def accepts_records(self) -> bool:
        """False once the child stops or loses the lease: a read handed over then is left unsettled."""
        if self.stopping or self.lease_lost:
            self.given_up = True
            return False
        return True

    def settled(self, sequence_number: str) -> None:
        self.last_settled = sequence_number

    def give_up(self, *, stopping: bool) -> None:
        self.given_up = True
        self.stopping = self.stopping or stopping

    def after_read(self) -> str | None:
        if self.lease_lost or self.given_up or self.last_settled == self.last_checkpointed:
            return None
        return self.last_settled

    def on_stop(self) -> str | None:
        return None if self.lease_lost else self.last_settled

    def may_end_shard(self) -> bool:
        return not self.given_up and not self.lease_lost and not self.holding

    def written(self, sequence_number: str | None) -> None:
        self.last_checkpointed = sequence_number
