"""`make image-test`: the phase timings, printed at the end of the run."""

from __future__ import annotations

import pytest
from image_support import TIMINGS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("image-test timings")
    for phase, seconds in TIMINGS:
        terminalreporter.write_line(f"  {phase:<44} {seconds:7.1f} s")
