"""`file`: appends one line per message (the route's payload), on disk before the checkpoint moves."""

from __future__ import annotations

import os
from collections.abc import Sequence

from consumer.config import FileSinkConfig
from consumer.decode import StreamContext
from consumer.errors import PermanentDeliveryError, TransientDeliveryError
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
        try:
            # One O_APPEND write per batch: children of other shards append to the same file without
            # interleaving lines.
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError) as error:
            raise PermanentDeliveryError(f"cannot open {self._path}: {error.strerror}") from error
        except OSError as error:
            raise TransientDeliveryError(f"cannot open {self._path}: {error.strerror}") from error
        try:
            end = os.fstat(fd).st_size
            try:
                complete = os.write(fd, text) == len(text)
                if complete:
                    os.fsync(fd)
            except OSError:
                complete = False
                raise
            finally:
                if not complete:
                    # A torn last line would glue itself to the retried batch's first line.
                    os.ftruncate(fd, end)
            if not complete:
                raise TransientDeliveryError(f"short write to {self._path} (disk full?)")
        except OSError as error:
            raise TransientDeliveryError(f"cannot write {self._path}: {error.strerror}") from error
        finally:
            os.close(fd)
        return ()

    def close(self) -> None:
        return None
