"""The sink contract: one method that takes a batch and reports what it could not take."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from consumer.errors import DeliveryError
from consumer.events import ChangeEvent


@dataclass(frozen=True, slots=True)
class Failure:
    event: ChangeEvent
    error: DeliveryError


class Sink(Protocol):
    """A notification destination.

    `send` returns the events it could not take, each with a typed error; an empty result means every event was
    accepted. Raising a DeliveryError means none of the batch was accepted. Accepted means durable: the checkpoint
    moves past an event as soon as every sink accepted it.
    """

    name: str

    def send(self, batch: Sequence[ChangeEvent]) -> Sequence[Failure]: ...

    def close(self) -> None: ...
