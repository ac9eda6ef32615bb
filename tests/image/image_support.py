"""Helpers of the image test: phase timings, printed at the end of the run by conftest.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

TIMINGS: list[tuple[str, float]] = []


@contextmanager
def timed(phase: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        TIMINGS.append((phase, time.monotonic() - start))
