"""The sink contract: one method that takes a batch of messages and reports what it could not take."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from consumer.errors import DeliveryError
from consumer.events import ChangeEvent


@dataclass(frozen=True, slots=True)
class Message:
    """One event on its way to one sink through one route, already rendered in the route's payload format."""

    event: ChangeEvent
    route: str
    body: str
    content_type: str  # the route's, else its format's (formats.content_type)


@dataclass(frozen=True, slots=True)
class Failure:
    message: Message
    error: DeliveryError


class Sink(Protocol):
    """A notification destination.

    `send` returns the messages it could not take, each with a typed error; an empty result means every message
    was accepted. Raising a DeliveryError means none of the batch was accepted. Accepted means durable: the
    checkpoint moves past an event as soon as every sink of every matching route accepted it. Messages arrive in
    stream order; a sink that sends several requests keeps that order for messages of the same item key.
    """

    name: str

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]: ...

    def close(self) -> None: ...
