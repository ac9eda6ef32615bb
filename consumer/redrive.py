"""`consumer redrive`: deliver dead-lettered records again, through the route and sink that refused them.

Entries come from a file (JSON lines) or an SQS queue written by the on-failure destination. Each record is
rendered again with its route's format and sent to its sink with the sink's delivery policy; the eventID, and so
every idempotency key, is unchanged. Entries delivered now leave the destination; entries that fail again stay.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import boto3

from consumer import files
from consumer.config import Config
from consumer.decode import StreamContext, decode_record
from consumer.delivery import Pipeline, RetryPolicy, UndeliveredError
from consumer.errors import ConsumerError, DecodeError, StartupError
from consumer.router import Router
from consumer.sinks import Sink, build_sink


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
    """`source` is file:PATH or sqs:QUEUE_URL."""
    kind, _, target = source.partition(":")
    if kind == "file":
        return _redrive_file(config, Path(target), progress)
    if kind == "sqs":
        return _redrive_queue(config, target, progress)
    raise StartupError(f"--from must be file:PATH or sqs:QUEUE_URL, not {source!r}")


def _redrive_file(config: Config, path: Path, progress: TextIO) -> Outcome:
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
        outcome = _deliver_all(config, entries, kept.append, progress)
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


def _file_entry(line: str) -> Entry:
    try:
        document = json.loads(line, parse_float=Decimal)
    except ValueError:
        document = None
    # A line that is not an entry (edited by hand, or torn by an older version) is kept for a person to read.
    return Entry(document if isinstance(document, Mapping) else {}, line)


def _redrive_queue(config: Config, queue_url: str, progress: TextIO) -> Outcome:
    sqs: Any = boto3.session.Session().client(
        "sqs", region_name=config.source.region, endpoint_url=config.source.endpoint_url
    )
    outcome = Outcome()
    try:
        while True:
            got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            messages = got.get("Messages", [])
            if not messages:
                return outcome
            entries = [
                Entry(json.loads(m["Body"], parse_float=Decimal), m["Body"], m["ReceiptHandle"]) for m in messages
            ]
            delivered = _deliver_all(
                config,
                entries,
                lambda _: None,
                progress,
                on_delivered=lambda e: sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=e.receipt),
            )
            outcome.delivered += delivered.delivered
            outcome.kept += delivered.kept
            if delivered.delivered == 0:
                return outcome  # what is left failed again; it becomes visible again after its timeout
    finally:
        sqs.close()


def _deliver_all(
    config: Config,
    entries: Sequence[Entry],
    keep: Callable[[Entry], None],
    progress: TextIO,
    on_delivered: Callable[[Entry], None] = lambda _: None,
) -> Outcome:
    outcome = Outcome()
    sinks: dict[tuple[str, str], Sink] = {}
    try:
        for index, entry in enumerate(entries, start=1):
            if _deliver_one(config, entry, sinks):
                outcome.delivered += 1
                on_delivered(entry)
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
    if not isinstance(record, Mapping) or not route_name:
        return False  # an undecodable record, or one that never had a route: a person must look at it
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
