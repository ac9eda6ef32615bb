from __future__ import annotations

import threading
from collections.abc import Iterator

import moto_lineage
import pytest
from oracle import RESULTS, table
from support import Receiver

from consumer.local import MotoServer


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section("fault suite")
        terminalreporter.write_line(table())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def lineage_url(moto: MotoServer) -> Iterator[str]:
    """A moto server in this process with the shard-split hook; the session's server cannot split shards."""
    del moto  # requested for the credentials and region it puts in the environment
    with moto_lineage.serve() as url:
        yield url
