from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import moto_lineage
import pytest
from oracle import RESULTS, table
from support import Receiver

from consumer.local import MotoServer

# `make faults-ci` (what CI runs, to stay within its time budget): one or two scenarios per kind of fault (a stop,
# a kill, a sink failure, a shard's end, a position, a destination, the configuration). `make faults` runs all.
CI_SCENARIOS = frozenset(
    {
        "test_clean_run_and_graceful_stop",
        "test_sigterm_mid_batch",
        "test_kill_9_of_the_worker_mid_batch",
        "test_kill_9_of_one_python_child",
        "test_two_workers_kill_9_of_the_lease_holder",
        "test_permanent_400_goes_to_the_destination",
        "test_poison_record_with_bisect",
        "test_handler_batch_item_failures",
        "test_sigterm_at_shard_end_while_the_sink_is_down",
        "test_latest_positions_survive_a_restart_before_the_first_write",
        "test_latest_worker_killed_and_replaced_under_a_new_worker_id",
        "test_stream_reenabled_while_the_worker_runs",
        "test_trimmed_checkpoint_continue",
        "test_sigterm_while_records_are_held_in_the_window",
        "test_file_redrive_twice_while_the_worker_appends",
        "test_large_dead_letter_without_an_overflow_is_sent_truncated",
        "test_refused_configurations_never_start_and_a_fixed_one_delivers",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("FAULTS_SUBSET") != "ci":
        return
    names = {item.name.split("[", 1)[0] for item in items}
    missing = sorted(CI_SCENARIOS - names)
    if missing:
        # A renamed scenario must not drop out of CI without a word.
        raise pytest.UsageError(f"CI_SCENARIOS names scenarios that do not exist: {', '.join(missing)}")
    kept = [item for item in items if item.name.split("[", 1)[0] in CI_SCENARIOS]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


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
