"""`file`: appends one line per message (the route's payload), on disk before the checkpoint moves."""

from __future__ import annotations

from collections.abc import Sequence

from consumer import files
from consumer.config import FileSinkConfig
from consumer.events import StreamContext
from consumer.sinks.base import Failure, Message
from consumer.sinks.registry import register

# Opening the file failed in a way only a person can fix; anything else (a full disk, too many open files) may pass.
_NEEDS_A_FIX = (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError)


@register("file")
class FileSink:
    def __init__(self, config: FileSinkConfig, context: StreamContext) -> None:
        del context
        self.name = config.name
        self._path = config.path

    def send(self, batch: Sequence[Message]) -> Sequence[Failure]:
        if not batch:
            return ()
        # A line per message: a multi-line template body keeps its line breaks escaped.
        text = "".join(m.body.replace("\n", "\\n") + "\n" for m in batch).encode("utf-8")
        # One O_APPEND write per batch, under the file's lock: children of other shards append to the same file
        # without interleaving lines, and a failed write is cut back without touching their lines.
        files.append_delivered(self._path, text, 0o644, name=str(self._path), refused=_NEEDS_A_FIX)
        return ()

    def close(self) -> None:
        return None
