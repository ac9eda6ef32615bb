"""`handler`: runs an existing Lambda handler, unchanged, on each batch, the way Lambda's runtime runs it.

The handler gets what Lambda would give it: {"Records": [...]} with every record as a DynamoDB event source
mapping delivers it, and a context object. It runs in a worker process (consumer.lambda_runtime), which, like a
Lambda execution environment, loads the handler module once and is reused across invocations; each lane of
`parallelization_factor` has its own. An invocation fails, as a function error, when the handler raises anything
(SystemExit included), overruns `timeout_seconds`, or its process dies or outgrows an enforced memory limit; in
the last three cases the process is killed and a fresh one started for the next invocation.

A {"batchItemFailures": [{"itemIdentifier": <SequenceNumber>}]} response is honoured only with
`function_response_types: [ReportBatchItemFailures]`, as Lambda honours it: processing resumes at the lowest failed
record, so that record and every later one of the batch are delivered again. Without it, Lambda ignores the
response, and so does this sink.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import structlog

from consumer.config import HandlerSinkConfig
from consumer.errors import FunctionError, StartupError, TransientDeliveryError
from consumer.events import StreamContext
from consumer.formats import to_lambda_record
from consumer.jsontext import dumps
from consumer.lambda_runtime import Handler, LambdaContext, RuntimeSettings, load_handler
from consumer.sinks.base import Failure, Message
from consumer.sinks.registry import register

__all__ = ["Handler", "HandlerSink", "LambdaContext", "check_handler", "load_handler"]

log = structlog.get_logger("consumer.sinks.handler")

# Lambda's init phase may take 10 s; one that takes longer is run again within the invocation, under the function's
# timeout. The longer of the two is how long a worker may take to load the handler module.
LAMBDA_INIT_SECONDS = 10.0
# How long the parent waits, after a response, for the handler's last output lines to be read and labelled.
_OUTPUT_DRAIN_SECONDS = 1.0
# How often a worker's resident memory is read while an enforced limit applies.
_MEMORY_CHECK_SECONDS = 0.05
_STOP_SECONDS = 2.0
_READ_CHUNK = 1 << 16


class _OverranError(Exception):
    """The worker did not answer before the deadline."""


class _OutgrewError(Exception):
    def __init__(self, resident_bytes: int) -> None:
        super().__init__(resident_bytes)
        self.resident_bytes = resident_bytes


class _Worker:
    """One worker process (one execution environment), its two protocol pipes and its output readers."""

    def __init__(self, config: HandlerSinkConfig, function_name: str, arn: str, labels: Mapping[str, Any]) -> None:
        self._config = config
        self._marker = f"\x1econsumer-output-end-{uuid.uuid4().hex}"
        requests_read, requests_write = os.pipe()
        responses_read, responses_write = os.pipe()
        settings = RuntimeSettings(
            handler=config.handler,
            function_name=function_name,
            function_version="$LATEST",
            invoked_function_arn=arn,
            memory_limit_in_mb=config.memory_limit_in_mb,
            log_group_name=f"/aws/lambda/{function_name}",
            # Lambda's shape: one stream per execution environment.
            log_stream_name=f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}",
            requests_fd=requests_read,
            responses_fd=responses_write,
            output_marker=self._marker,
        )
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "consumer.lambda_runtime", json.dumps(dataclasses.asdict(settings))],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(requests_read, responses_write),
                # Its own session: a terminal's Ctrl-C goes to the service, which stops in order, and a kill reaches
                # whatever the handler started too, as when Lambda discards an environment.
                start_new_session=True,
                # Without it, what the handler prints waits in a pipe buffer and reaches the log late or, if the
                # process is killed, never.
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            os.close(requests_read)
            os.close(responses_write)
        self._requests: IO[bytes] = os.fdopen(requests_write, "wb")
        self._responses = responses_read
        self._pending = b""
        self.ready = False
        self.usable = True
        self.labels: dict[str, Any] = {**labels, "worker_pid": self.process.pid}
        self._drained = {"stdout": threading.Event(), "stderr": threading.Event()}
        for name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr)):
            assert stream is not None  # noqa: S101 - both are PIPE
            threading.Thread(
                target=self._relay, args=(name, stream), name=f"handler-{name}-{self.process.pid}", daemon=True
            ).start()
        log.info("handler worker started", **self.labels)

    def wait_ready(self) -> None:
        """Wait for the handler module to load; FunctionError (and the worker discarded) if it does not."""
        if self.ready:
            return
        limit = max(LAMBDA_INIT_SECONDS, self._config.timeout_seconds)
        try:
            message = self._read_message(time.monotonic() + limit)
        except _OverranError:
            self.discard()
            raise FunctionError(f"handler did not finish loading within {limit:g} s") from None
        except _OutgrewError as outgrew:
            self.discard()
            raise self._memory_error(outgrew) from None
        self._wait_for_output()
        if message is None:
            ended = self._exit_description()
            self.discard()
            raise FunctionError(f"handler worker {ended} while loading")
        if not message.get("ready"):
            self.discard()
            raise FunctionError(str(message.get("error", "handler failed while loading")))
        self.ready = True

    def invoke(self, event: str, request_id: str, shard_id: Any) -> Any:
        """One invocation; returns the handler's response or raises FunctionError."""
        timeout = self._config.timeout_seconds
        # Replaced, never updated in place: the output readers read it from their own threads.
        self.labels = {**self.labels, "aws_request_id": request_id, "shard_id": shard_id}
        for drained in self._drained.values():
            drained.clear()
        started = time.monotonic()
        request = {"aws_request_id": request_id, "remaining_ms": int(timeout * 1000), "event": "__EVENT__"}
        line = json.dumps(request).replace('"__EVENT__"', event, 1)
        try:
            self._requests.write(line.encode("utf-8") + b"\n")
            self._requests.flush()
        except OSError:
            ended = self._exit_description()
            self.discard()
            raise FunctionError(f"handler worker {ended}") from None
        try:
            message = self._read_message(started + timeout)
        except _OverranError:
            self.discard()
            raise FunctionError(f"handler timed out after {timeout:g} s; its worker process was killed") from None
        except _OutgrewError as outgrew:
            self.discard()
            raise self._memory_error(outgrew) from None
        self._wait_for_output()
        if message is None:
            ended = self._exit_description()  # before the kill, which would otherwise be all it reports
            self.discard()
            raise FunctionError(f"handler worker {ended} during the invocation")
        if "error" in message:
            error = message["error"]
            if message.get("fatal") or self.process.poll() is not None:
                self.discard()  # the runtime ends itself after a BaseException; a fresh one takes the next batch
            raise FunctionError(f"handler raised {error.get('type')}: {error.get('message')}")
        return message.get("response")

    def _memory_error(self, outgrew: _OutgrewError) -> FunctionError:
        return FunctionError(
            f"handler exceeded memory_limit_in_mb ({self._config.memory_limit_in_mb} MB, resident "
            f"{outgrew.resident_bytes // (1 << 20)} MB); its worker process was killed"
        )

    def _read_message(self, deadline: float) -> dict[str, Any] | None:
        """The next JSON line from the worker; None when it ended without one."""
        watch_memory = self._config.enforce_memory_limit
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _OverranError
            wait = min(remaining, _MEMORY_CHECK_SECONDS) if watch_memory else remaining
            readable, _, _ = select.select([self._responses], [], [], wait)
            if watch_memory:
                resident = _resident_bytes(self.process.pid)
                if resident > self._config.memory_limit_in_mb * (1 << 20):
                    raise _OutgrewError(resident)
            if readable:
                chunk = os.read(self._responses, _READ_CHUNK)
                if not chunk:
                    return None
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message

    def _wait_for_output(self) -> None:
        deadline = time.monotonic() + _OUTPUT_DRAIN_SECONDS
        for drained in self._drained.values():
            drained.wait(max(0.0, deadline - time.monotonic()))

    def _relay(self, stream_name: str, stream: IO[bytes]) -> None:
        """Each line the handler writes becomes a log line of the service's, labelled with its invocation."""
        marker = self._marker.encode("utf-8")
        for raw in stream:
            text = raw.rstrip(b"\n")
            ended = text.endswith(marker)
            if ended:
                text = text[: -len(marker)]
            if text:
                log.info(text.decode("utf-8", errors="replace").rstrip("\r"), stream=stream_name, **self.labels)
            if ended:
                self._drained[stream_name].set()
        stream.close()
        self._drained[stream_name].set()

    def _exit_description(self) -> str:
        try:
            status = self.process.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            return "stopped answering"
        if status < 0:
            return f"was killed by {signal.Signals(-status).name}"
        return f"exited with status {status}"

    def discard(self) -> None:
        """Kill the worker and everything it started; it takes no more invocations."""
        self.usable = False
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._close_pipes()
        log.info("handler worker stopped", status=self.process.returncode, **self.labels)

    def stop(self) -> None:
        """End the worker as Lambda ends an idle environment: its request pipe closes, and it exits."""
        self.usable = False
        self._close_pipes()
        try:
            self.process.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.discard()

    def _close_pipes(self) -> None:
        # A worker that died may have left a request unread in a full pipe: closing it then fails, harmlessly.
        with contextlib.suppress(OSError):
            self._requests.close()
        if self._responses >= 0:
            os.close(self._responses)
            self._responses = -1


def _resident_bytes(pid: int) -> int:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text(encoding="ascii").split()[1])
    except (OSError, IndexError, ValueError):
        return 0  # gone, or not Linux: the process's end is noticed on the response pipe
    return pages * os.sysconf("SC_PAGE_SIZE")


@register("handler")
class HandlerSink:
    def __init__(self, config: HandlerSinkConfig, context: StreamContext) -> None:
        self.name = config.name
        self._config = config
        self._context = context
        function_name = config.function_name or config.name
        account = context.stream_arn.split(":")[4]
        self._arn = f"arn:aws:lambda:{context.region}:{account}:function:{function_name}"
        self._function_name = function_name
        self._report_item_failures = "ReportBatchItemFailures" in config.function_response_types
        # Idle workers, one per lane that has run: a lane takes one, or starts one (a cold start), and gives it back.
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        if not batch:
            return ()
        records = [to_lambda_record(message.event, self._context, private=False) for message in batch]
        response = self._invoke(dumps({"Records": records}))
        if not self._report_item_failures:
            return ()
        first_failed = _first_failed_index(response, batch)
        if first_failed is None:
            return ()
        reported = TransientDeliveryError(
            f"handler reported batchItemFailures from sequence number {batch[first_failed].event.sequence_number}"
        )
        return [Failure(message, reported) for message in batch[first_failed:]]

    def _invoke(self, event: str) -> Any:
        shard_id = structlog.contextvars.get_contextvars().get("shard_id")
        worker = self._take_worker(shard_id)
        try:
            worker.wait_ready()
            return worker.invoke(event, str(uuid.uuid4()), shard_id)
        finally:
            if worker.usable:
                self._give_back(worker)
            else:
                self._replace(shard_id)

    def _replace(self, shard_id: Any) -> None:
        """Start a worker for a discarded one now, so that its init overlaps the retry's backoff."""
        try:
            worker = self._start_worker(shard_id)
        except TransientDeliveryError as error:
            # The invocation's own error is the one to report; the next invocation tries to start one again.
            log.warning("cannot start a replacement handler worker", sink=self.name, error=str(error))
            return
        self._give_back(worker)

    def _take_worker(self, shard_id: Any) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.process.poll() is None:
                    return worker
                worker.discard()  # died while idle (a handler's own thread, the OOM killer)
        return self._start_worker(shard_id)

    def _start_worker(self, shard_id: Any) -> _Worker:
        try:
            return _Worker(
                self._config,
                self._function_name,
                self._arn,
                {"sink": self.name, "function_name": self._function_name, "shard_id": shard_id},
            )
        except OSError as error:  # out of processes or file descriptors: not the records' doing
            raise TransientDeliveryError(f"cannot start a handler worker: {error}") from error

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                return
        worker.stop()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()


def check_handler(config: HandlerSinkConfig) -> None:
    """Load the handler in a throwaway worker process; StartupError with one line if it cannot be loaded.

    Never in this process: module-level code runs in workers only, as in Lambda, where it runs per environment.
    """
    worker = _Worker(config, config.function_name or config.name, "", {"sink": config.name, "phase": "check"})
    try:
        worker.wait_ready()
    except FunctionError as error:
        raise StartupError(str(error)) from None
    finally:
        worker.stop()


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
