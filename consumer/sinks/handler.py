"""`handler`: runs an existing Lambda handler, unchanged, on each batch.

The handler gets what Lambda would give it: {"Records": [...]} with every record as a DynamoDB event source
mapping delivers it, and a context object. A {"batchItemFailures": [{"itemIdentifier": <SequenceNumber>}]}
response is honoured the way Lambda honours it: processing resumes at the lowest failed record, so that record
and every later one of the batch are delivered again.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumer.config import HandlerSinkConfig
from consumer.decode import StreamContext, to_lambda_record
from consumer.errors import FunctionError, StartupError, TransientDeliveryError
from consumer.sinks.base import Failure, Message
from consumer.sinks.registry import register

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The attributes and method of Lambda's Python context object that handlers use."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None
    deadline: float = 0.0  # time.monotonic() at which the invocation would time out

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def load_handler(spec: str) -> Handler:
    """Import "package.module:function" or "path/to/file.py:function" (a path relative to the working directory).

    Raises StartupError naming the spec when it cannot be imported.
    """
    target, _, function_name = spec.rpartition(":")
    try:
        module = _module_from_file(Path(target)) if target.endswith(".py") else importlib.import_module(target)
        function = getattr(module, function_name)
    except (ImportError, AttributeError, OSError, SyntaxError) as error:
        raise StartupError(f"cannot load handler {spec!r}: {type(error).__name__}: {error}") from error
    except Exception as error:  # the handler module's own start-up code failed
        raise StartupError(f"handler {spec!r} failed while loading: {type(error).__name__}: {error}") from error
    if not callable(function):
        raise StartupError(f"handler {spec!r}: {function_name} is not callable")
    return function  # type: ignore[no-any-return]


def _module_from_file(path: Path) -> Any:
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    # Like Lambda's task root: modules beside the handler file import each other by name.
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


@register("handler")
class HandlerSink:
    def __init__(self, config: HandlerSinkConfig, context: StreamContext) -> None:
        self.name = config.name
        self._config = config
        self._context = context
        self._handler = load_handler(config.handler)
        function_name = config.function_name or config.name
        account = context.stream_arn.split(":")[4]
        self._arn = f"arn:aws:lambda:{context.region}:{account}:function:{function_name}"
        self._function_name = function_name
        self._running: threading.Thread | None = None

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        if not batch:
            return ()
        records = [to_lambda_record(message.event, self._context) for message in batch]
        invocation = LambdaContext(
            function_name=self._function_name,
            memory_limit_in_mb=self._config.memory_limit_in_mb,
            invoked_function_arn=self._arn,
            deadline=time.monotonic() + self._config.timeout_seconds,
        )
        response = self._invoke({"Records": records}, invocation)
        first_failed = _first_failed_index(response, batch)
        if first_failed is None:
            return ()
        reported = TransientDeliveryError(
            f"handler reported batchItemFailures from sequence number {batch[first_failed].event.sequence_number}"
        )
        return [Failure(message, reported) for message in batch[first_failed:]]

    def _invoke(self, event: dict[str, Any], invocation: LambdaContext) -> Any:
        """Call the handler with Lambda's timeout: a run past `timeout_seconds` is a failed invocation.

        Python cannot stop a thread, so a handler that overran keeps running on its own; until it returns, later
        batches fail at once instead of piling more runs of it up.
        """
        if self._running is not None and self._running.is_alive():
            raise TransientDeliveryError("handler still running from an invocation that timed out")
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["response"] = self._handler(event, invocation)
            except Exception as error:  # noqa: BLE001 - handed back to the caller's thread below
                outcome["error"] = error

        thread = threading.Thread(target=run, name=f"handler-{self.name}", daemon=True)
        self._running = thread
        thread.start()
        thread.join(self._config.timeout_seconds)
        # Both are Lambda's function errors: retried (the retry policy decides how often), and bisectable, since a
        # record may be what the handler chokes on or spends its time on.
        if thread.is_alive():
            raise FunctionError(f"handler timed out after {self._config.timeout_seconds:g} s")
        if "error" in outcome:
            error = outcome["error"]
            raise FunctionError(f"handler raised {type(error).__name__}: {error}") from error
        return outcome.get("response")

    def close(self) -> None:
        return None


def _first_failed_index(response: Any, batch: Sequence[Message]) -> int | None:
    """Index of the lowest failed record, None if all succeeded; the whole batch if the response is malformed."""
    if not isinstance(response, Mapping) or "batchItemFailures" not in response:
        return None
    failures = response["batchItemFailures"]
    if not failures:
        return None
    positions = {message.event.sequence_number: i for i, message in enumerate(batch)}
    indexes = []
    for item in failures if isinstance(failures, list) else [failures]:
        identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if identifier not in positions:
            # Lambda treats an empty or unknown identifier as a failure of the whole batch.
            return 0
        indexes.append(positions[identifier])
    return min(indexes)
