"""The worker process of a `handler` sink: a Lambda execution environment for one handler, reused across invocations.

Run as `python -m consumer.lambda_runtime SETTINGS` by consumer.sinks.handler, never by hand. The handler module is
imported once, at the start (Lambda's init: its module-level code runs once per worker process); then each request
is one invocation. Requests and responses are JSON lines on two pipes of their own, so the handler's stdout and
stderr are free to carry what it prints: the parent turns them into log lines.

Only the standard library is imported here (besides the error tree): a worker starts for every lane and again after
every timeout, and the handler, not this runtime, decides what else is loaded.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from consumer.errors import StartupError

Handler = Callable[[dict[str, Any], Any], Any]

_PARENT_CHECK_SECONDS = 1.0


@dataclass
class LambdaContext:
    """The attributes and method of Lambda's Python context object."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None
    deadline: float = 0.0  # time.monotonic() at which the invocation times out

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
    except BaseException as error:  # the module's own start-up code failed, or called sys.exit
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


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """What the parent tells a worker process at its start (one JSON argument)."""

    handler: str
    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    log_group_name: str
    log_stream_name: str
    requests_fd: int
    responses_fd: int
    # Written to stdout and stderr at the end of init and of each invocation, so the parent knows it has read all
    # the output of that invocation before it labels what follows with the next request id.
    output_marker: str


def main(argv: list[str]) -> int:
    settings = RuntimeSettings(**json.loads(argv[1]))
    # The record-processor child ignores these (the JVM stops it through the protocol), and ignored signals are
    # inherited: the handler, and what it starts, get the dispositions of an ordinary process.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _exit_with_parent()
    requests = os.fdopen(settings.requests_fd, "rb")
    responses = os.fdopen(settings.responses_fd, "wb", buffering=0)
    marker = settings.output_marker.encode("utf-8")
    try:
        handler = load_handler(settings.handler)
    except StartupError as error:
        _end_output(marker)
        _reply(responses, {"ready": False, "error": " ".join(str(error).split())})
        return 1
    _end_output(marker)
    _reply(responses, {"ready": True})
    for line in requests:
        request = json.loads(line)
        context = LambdaContext(
            function_name=settings.function_name,
            memory_limit_in_mb=settings.memory_limit_in_mb,
            invoked_function_arn=settings.invoked_function_arn,
            aws_request_id=request["aws_request_id"],
            function_version=settings.function_version,
            log_group_name=settings.log_group_name,
            log_stream_name=settings.log_stream_name,
            deadline=time.monotonic() + request["remaining_ms"] / 1000,
        )
        fatal = False
        try:
            reply = {"response": json.loads(_to_json(handler(request["event"], context)))}
        except Exception as error:  # noqa: BLE001 - whatever the handler raises is its failed invocation
            reply = _error_reply(error)
        except BaseException as error:  # noqa: BLE001
            # SystemExit, KeyboardInterrupt, CancelledError: a failed invocation. Lambda's runtime does not survive
            # them either; the process ends and the next invocation gets a fresh one.
            reply = {**_error_reply(error), "fatal": True}
            fatal = True
        _end_output(marker)
        _reply(responses, reply)
        if fatal:
            os._exit(1)
    return 0


def _to_json(response: Any) -> str:
    try:
        return json.dumps(response, default=_number_or_fail)
    except (TypeError, ValueError) as error:
        # Lambda's Runtime.MarshalError: a response that is not JSON fails the invocation.
        raise _MarshalError(f"unable to marshal response: {error}") from error


def _number_or_fail(value: Any) -> Any:
    if isinstance(value, Decimal):  # what boto3's resources return for numbers; Lambda's runtime writes them too
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class _MarshalError(Exception):
    pass


def _error_reply(error: BaseException) -> dict[str, Any]:
    kind = "Runtime.MarshalError" if isinstance(error, _MarshalError) else type(error).__name__
    return {
        "error": {
            "type": kind,
            "message": str(error),
            "trace": traceback.format_exception(error)[-10:],
        }
    }


def _reply(responses: BinaryIO, message: dict[str, Any]) -> None:
    try:
        responses.write(json.dumps(message).encode("utf-8") + b"\n")
    except BrokenPipeError:
        # The parent let this worker go (the sink closed) or is gone: nobody is waiting for the answer.
        os._exit(0)


def _end_output(marker: bytes) -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a handler closed or replaced it; its output is whatever reached the fd
            pass
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            os.write(fd, marker + b"\n")


def _exit_with_parent() -> None:
    """End this process when its parent is gone, even in the middle of a handler that never returns.

    The worker runs in a session of its own (so a terminal's Ctrl-C reaches only the service, which stops in order),
    and a child that died hard would otherwise leave it running.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(_PARENT_CHECK_SECONDS)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
