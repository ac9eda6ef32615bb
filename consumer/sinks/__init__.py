"""Notification sinks, each a plug-in registered by its config `type`."""

from consumer.sinks.base import Failure, Sink
from consumer.sinks.registry import build_sink, register, registered_types

__all__ = ["Failure", "Sink", "build_sink", "register", "registered_types"]
