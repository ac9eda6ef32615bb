"""Lambda's batching window: records gathered across reads until a batch is full or the window closes.

A child holds the records (as the KCL sent them, not decoded) between reads; they are not settled, so the
checkpoint stays before them (`consumer.checkpoint.Positions`). The window is measured from the arrival of the
first record held and can only close when the KCL calls the child, which it does every read, empty or not
(`callProcessRecordsEvenForEmptyRecordList`): a window closes at the first read after it expires.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Lambda also ends a batch when its invocation payload reaches 6 MB; measured here on the records' bytes.
MAX_HELD_BYTES = 6 * 1024 * 1024


class BatchingWindow:
    def __init__(self, batch_size: int, window_seconds: float) -> None:
        self._batch_size = batch_size
        self.seconds = window_seconds
        self.held: list[Any] = []
        self._opened = 0.0
        self._bytes = 0

    def add(self, records: Sequence[Any], moment: float) -> None:
        if not self.held:
            self._opened = moment
        self.held += records
        # kclpy keeps each record's data as base64 text: its length is 4/3 of the bytes.
        self._bytes += sum(len(record.data) * 3 // 4 for record in records)

    def due(self, moment: float) -> list[Any]:
        """Take the records to deliver now, in stream order; the rest stay held."""
        if self.seconds <= 0 or moment - self._opened >= self.seconds or self._bytes >= MAX_HELD_BYTES:
            count = len(self.held)
        else:
            # Full batches go at once. What is left over came in the latest read (everything held before it made
            # less than a batch), so its window opens now.
            count = len(self.held) // self._batch_size * self._batch_size
        taken, self.held = self.held[:count], self.held[count:]
        if taken and self.held:
            self._opened = moment
            self._bytes = sum(len(record.data) * 3 // 4 for record in self.held)
        elif not self.held:
            self._bytes = 0
        return taken

    def flush(self) -> list[Any]:
        """Take every held record (the shard ended, or the child is stopping)."""
        taken = self.held
        self.drop()
        return taken

    def drop(self) -> None:
        """Forget the held records: they are given up, to be read again from the last checkpoint."""
        self.held = []
        self._bytes = 0
