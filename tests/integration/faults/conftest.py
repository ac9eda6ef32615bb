from __future__ import annotations

import pytest
from oracle import RESULTS, table


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section("fault suite")
        terminalreporter.write_line(table())
