"""`file`: appends one line per message (the route's payload), on disk before the checkpoint moves."""

from __future__ import annotations

from collections.abc import Sequence

from consumer import files
from consumer.config import FileSinkConfig
from consumer.errors import PermanentDeliveryError, TransientDeliveryError
from consumer.events import StreamContext
from consumer.sinks.base import Failure, Message
from consumer.sinks.registry import register


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
        try:
            with files.locked(self._path, 0o644) as fd:
                try:
                    files.append(fd, text)
                except OSError as error:
                    raise TransientDeliveryError(f"cannot write {self._path}: {error.strerror}") from error
        except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError) as error:
            raise PermanentDeliveryError(f"cannot open {self._path}: {error.strerror}") from error
        except OSError as error:
            raise TransientDeliveryError(f"cannot open {self._path}: {error.strerror}") from error
        return ()

    def close(self) -> None:
        return None
