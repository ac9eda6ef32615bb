"""`consumer redrive`: deliver dead-lettered records again, through the route and sink that refused them.

Entries come from a file (JSON lines), an SQS queue or an S3 prefix written by the on-failure destination. Each
record is rendered again with its route's format and sent to its sink with the sink's delivery policy; the
eventID, and so every idempotency key, is unchanged. Entries delivered now leave the destination; entries that
fail again stay. A pointer entry (a record too large for the queue) is delivered from its overflow, and its
overflow copy leaves with it; an entry sent without its images ("truncated") is kept for a person.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from consumer import clients, files
from consumer.config import Config, S3DestinationConfig
from consumer.decode import decode_record
from consumer.delivery import Pipeline, RetryPolicy
from consumer.errors import ConsumerError, DecodeError, StartupError, UndeliveredError
from consumer.events import StreamContext
from consumer.router import Router
from consumer.sinks import Sink, build_sink

log = structlog.get_logger("consumer.redrive")


@dataclass(frozen=True, slots=True)
class Entry:
    document: Mapping[str, Any]
    text: str
    receipt: str | None = None  # SQS receipt handle


@dataclass(slots=True)
class Outcome:
    delivered: int = 0
    kept: int = 0


def redrive(config: Config, source: str, progress: TextIO = sys.stderr) -> Outcome:
    """`source` is file:PATH, sqs:QUEUE_URL or s3://BUCKET/PREFIX."""
    kind, _, target = source.partition(":")
    overflows = _Overflows(config)
    try:
        if kind == "file":
            return _redrive_file(config, Path(target), progress, overflows)
        if kind == "sqs":
            return _redrive_queue(config, target, progress, overflows)
        if kind == "s3" and target.startswith("//") and target[2:].split("/", 1)[0]:
            bucket, _, prefix = target[2:].partition("/")
            return _redrive_bucket(config, bucket, prefix, progress, overflows)
    finally:
        overflows.close()
    raise StartupError(f"--from must be file:PATH, sqs:QUEUE_URL or s3://BUCKET/PREFIX, not {source!r}")


def _redrive_file(config: Config, path: Path, progress: TextIO, overflows: _Overflows) -> Outcome:
    # The file is moved aside under the writers' lock before it is read: children go on appending to a fresh file
    # at the path while this runs, and what is kept is appended back to it. A redrive that died leaves its aside
    # file behind, unlocked: it is taken up here with the file.
    taken = _leftovers(path)
    aside = path.with_name(f"{path.name}{_ASIDE}{uuid.uuid4().hex[:12]}")
    try:
        fd = files.take_aside(path, aside)
    except OSError as error:
        _close(taken)
        raise StartupError(f"cannot read {path}: {error.strerror}") from error
    if fd is not None:
        taken.append((fd, aside))
    if not taken:
        raise StartupError(f"cannot read {path}: No such file or directory")
    try:
        entries = [_file_entry(line) for _, moved in taken for line in _lines(moved) if line.strip()]
        kept: list[Entry] = []
        outcome = _deliver_all(config, entries, kept.append, progress, overflows=overflows)
        if kept:
            mode = os.fstat(taken[-1][0]).st_mode & 0o777
            files.append_locked(path, "".join(entry.text + "\n" for entry in kept).encode("utf-8"), mode)
        for _, moved in taken:
            moved.unlink()
    finally:
        _close(taken)
    return outcome


_ASIDE = ".redrive-"


def _leftovers(path: Path) -> list[tuple[int, Path]]:
    """Aside files of redrives that died (no process holds their lock), locked for this one."""
    try:
        found = sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name + _ASIDE))
    except OSError:
        return []
    taken = []
    for leftover in found:
        fd = files.try_lock(leftover)
        if fd is not None:
            taken.append((fd, leftover))
    return taken


def _close(taken: list[tuple[int, Path]]) -> None:
    for fd, _ in taken:
        os.close(fd)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise StartupError(f"cannot read {path}: {error.strerror}") from error


def _file_entry(line: str, receipt: str | None = None) -> Entry:
    try:
        document = json.loads(line, parse_float=Decimal)
    except ValueError:
        document = None
    # A line that is not an entry (edited by hand, or torn by an older version) is kept for a person to read.
    return Entry(document if isinstance(document, Mapping) else {}, line, receipt)


def _redrive_queue(config: Config, queue_url: str, progress: TextIO, overflows: _Overflows) -> Outcome:
    sqs: Any = clients.client("sqs", config.source.region, config.source.endpoint_url, None)
    outcome = Outcome()
    try:
        while True:
            got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            messages = got.get("Messages", [])
            if not messages:
                return outcome
            entries = [_file_entry(m["Body"], m["ReceiptHandle"]) for m in messages]
            delivered = _deliver_all(
                config,
                entries,
                lambda _: None,
                progress,
                overflows=overflows,
                on_delivered=lambda e: sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=e.receipt),
            )
            outcome.delivered += delivered.delivered
            outcome.kept += delivered.kept
            if delivered.delivered == 0:
                return outcome  # what is left failed again; it becomes visible again after its timeout
    finally:
        sqs.close()


def _redrive_bucket(config: Config, bucket: str, prefix: str, progress: TextIO, overflows: _Overflows) -> Outcome:
    s3 = overflows.s3(bucket)
    outcome = Outcome()
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            entries = [
                _file_entry(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode("utf-8"), item["Key"])
                for item in page.get("Contents", [])
            ]
            delivered = _deliver_all(
                config,
                entries,
                lambda _: None,
                progress,
                overflows=overflows,
                on_delivered=lambda e: s3.delete_object(Bucket=bucket, Key=e.receipt),
            )
            outcome.delivered += delivered.delivered
            outcome.kept += delivered.kept
    except ClientError as error:
        code = clients.error_code(error)
        raise StartupError(f"cannot read s3://{bucket}/{prefix}: {code}: {error}") from None
    return outcome


class _Overflows:
    """The whole entries behind pointer entries, and the S3 clients to read them (and S3 sources) with."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._clients: dict[str, Any] = {}
        self._delivered_lines: dict[Path, set[str]] = {}

    def s3(self, bucket: str) -> Any:
        if bucket not in self._clients:
            # The bucket's own settings if the configuration names it (destination or overflow), else the source's.
            named = [
                d
                for d in (self._config.on_failure, getattr(self._config.on_failure, "overflow", None))
                if isinstance(d, S3DestinationConfig) and d.bucket == bucket
            ]
            region = (named[0].region if named else None) or self._config.source.region
            endpoint_url = (named[0].endpoint_url if named else None) or self._config.source.endpoint_url
            self._clients[bucket] = clients.client("s3", region, endpoint_url, None)
        return self._clients[bucket]

    def whole(self, entry: Entry) -> Entry | None:
        """The entry itself, the whole entry its pointer leads to, or None if that cannot be read."""
        location = entry.document.get("overflow")
        if not isinstance(location, Mapping):
            return entry
        try:
            if isinstance(location.get("s3"), str):
                bucket, key = _s3_location(location["s3"])
                text = self.s3(bucket).get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
            elif isinstance(location.get("file"), str):
                text = _line_with_digest(Path(location["file"]), str(location.get("sha256")))
            else:
                text = None
        except (ClientError, BotoCoreError, OSError, UnicodeDecodeError) as error:
            log.warning("cannot read a dead letter's overflow", overflow=dict(location), error=str(error))
            return None
        if text is None:
            log.warning("a dead letter's overflow is gone", overflow=dict(location))
            return None
        return _file_entry(text)

    def delivered(self, entry: Entry) -> None:
        """The pointer entry was delivered and has left its destination: its whole copy leaves too."""
        location = entry.document.get("overflow")
        if not isinstance(location, Mapping):
            return
        if isinstance(location.get("s3"), str):
            bucket, key = _s3_location(location["s3"])
            self.s3(bucket).delete_object(Bucket=bucket, Key=key)
        elif isinstance(location.get("file"), str):
            self._delivered_lines.setdefault(Path(location["file"]), set()).add(str(location.get("sha256")))

    def close(self) -> None:
        try:
            for path, digests in self._delivered_lines.items():
                _remove_lines(path, digests)
        finally:
            for client in self._clients.values():
                client.close()


def _remove_lines(path: Path, digests: set[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        files.remove_lines(path, lambda line: _digest(line) in digests)


def _s3_location(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _line_with_digest(path: Path, wanted: str) -> str | None:
    with path.open("rb") as lines:
        for line in lines:
            if _digest(line.rstrip(b"\n")) == wanted:
                return line.rstrip(b"\n").decode("utf-8")
    return None


def _deliver_all(
    config: Config,
    entries: Sequence[Entry],
    keep: Callable[[Entry], None],
    progress: TextIO,
    *,
    overflows: _Overflows,
    on_delivered: Callable[[Entry], None] = lambda _: None,
) -> Outcome:
    outcome = Outcome()
    sinks: dict[tuple[str, str], Sink] = {}
    try:
        for index, entry in enumerate(entries, start=1):
            whole = overflows.whole(entry)
            if whole is not None and _deliver_one(config, whole, sinks):
                outcome.delivered += 1
                on_delivered(entry)
                overflows.delivered(entry)
            else:
                outcome.kept += 1
                keep(entry)
            _progress(progress, index, len(entries), outcome)
    finally:
        for sink in sinks.values():
            sink.close()
        if entries:
            progress.write("\n")
    return outcome


def _deliver_one(config: Config, entry: Entry, sinks: dict[tuple[str, str], Sink]) -> bool:
    record = entry.document.get("record")
    route_name = entry.document.get("route")
    if not isinstance(record, Mapping) or not route_name or entry.document.get("truncated"):
        # An undecodable record, one that never had a route, or one sent without its images: a person must look.
        return False
    routes = {route.name: route for route in config.routes}
    if config.routes and route_name not in routes:
        return False
    context = StreamContext(
        stream_arn=str(record.get("eventSourceARN", "")),
        region=str(record.get("awsRegion") or config.source.region),
        endpoint_url=config.source.endpoint_url,
    )
    try:
        event = decode_record(_adapter_bytes(record), context)
    except DecodeError:
        return False
    wanted = entry.document.get("sink")
    route = routes.get(str(route_name))
    sink_names = [str(wanted)] if wanted else list(route.sinks if route else (s.name for s in config.sinks))
    single = config.model_copy(update={"routes": (route,) if route else (), "unmatched": "drop"})
    by_name = {s.name: s for s in config.sinks}
    for name in sink_names:
        sink_config = by_name.get(name)
        if sink_config is None:
            return False
        key = (name, context.stream_arn)
        if key not in sinks:
            sinks[key] = build_sink(sink_config, context)
        router = Router.from_config(single, context) if route else Router.to_all([name], context)
        policy = RetryPolicy.from_config(sink_config.delivery or config.delivery)
        try:
            Pipeline(router, [sinks[key]], {name: policy}).deliver([event])
        except (UndeliveredError, ConsumerError):
            return False
    return True


def _adapter_bytes(record: Mapping[str, Any]) -> bytes:
    """The Lambda-shaped record back in the adapter's shape (creation time in milliseconds), for the decoder."""
    dynamodb = dict(record["dynamodb"])
    dynamodb["ApproximateCreationDateTime"] = int(Decimal(str(dynamodb["ApproximateCreationDateTime"])) * 1000)
    adapter = {k: v for k, v in record.items() if k != "eventSourceARN"}
    adapter["dynamodb"] = dynamodb
    return json.dumps(adapter, default=str).encode("utf-8")


def _progress(out: TextIO, done: int, total: int, outcome: Outcome) -> None:
    width = 30
    filled = width * done // max(total, 1)
    bar = "#" * filled + "-" * (width - filled)
    end = "\r" if out.isatty() else "\n"
    out.write(f"[{bar}] {done}/{total}  delivered {outcome.delivered}  kept {outcome.kept}{end}")
    out.flush()
