"""Notification sinks, each a plug-in registered by its config `type`."""

from consumer.sinks.base import Failure, Message, Sink
from consumer.sinks.registry import build_sink, register, registered_types

__all__ = ["Failure", "Message", "Sink", "build_sink", "register", "registered_types"]
