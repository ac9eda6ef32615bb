"""The handler sink as a Lambda runtime: worker processes, timeouts, BaseExceptions, lanes, logs and the context."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_routing import ALL, CONTEXT, INSERT, PRICE_CHANGE, REMOVE

from consumer.config import HandlerSinkConfig
from consumer.errors import FunctionError, StartupError, TransientDeliveryError
from consumer.sinks.base import Message
from consumer.sinks.handler import HandlerSink, check_handler, load_handler

SEED_HANDLER = Path(__file__).parents[2] / "config" / "handlers" / "lambda_function.py"
REPORT = ("ReportBatchItemFailures",)


@pytest.fixture
def sinks() -> Iterator[list[HandlerSink]]:
    made: list[HandlerSink] = []
    yield made
    for sink in made:
        sink.close()


def _sink(sinks: list[HandlerSink], tmp_path: Path, code: str, **settings: Any) -> HandlerSink:
    (tmp_path / "fn.py").write_text(code)
    config = HandlerSinkConfig(type="handler", name="fn", handler=f"{tmp_path / 'fn.py'}:handler", **settings)
    sink = HandlerSink(config, CONTEXT)
    sinks.append(sink)
    return sink


def _messages(*events: Any) -> list[Message]:
    return [Message(e, "r", "", "application/json") for e in events]


def _log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# Writes the worker's pid, so a test can tell which process ran an invocation.
_PIDS = """
import os, sys, time
def handler(event, context):
    record = event['Records'][0]['dynamodb']
    with open(os.path.join(os.path.dirname(__file__), 'pids.txt'), 'a') as out:
        out.write(f"{os.getpid()}\\n")
    BODY
"""


def _pids_handler(body: str) -> str:
    return _PIDS.replace("BODY", body)


def _pids(tmp_path: Path) -> list[int]:
    return [int(pid) for pid in (tmp_path / "pids.txt").read_text().split()]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_seed_handler_runs_unchanged_and_its_prints_are_log_lines(
    sinks: list[HandlerSink], capsys: pytest.CaptureFixture[str]
) -> None:
    sink = HandlerSink(HandlerSinkConfig(type="handler", handler=f"{SEED_HANDLER}:lambda_handler"), CONTEXT)
    sinks.append(sink)
    assert sink.send(_messages(INSERT, PRICE_CHANGE, REMOVE)) == ()
    assert sink.send(_messages(INSERT)) == ()
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout of a record-processor child is the KCL's protocol channel
    lines = _log_lines(captured.err)
    printed = [line for line in lines if line.get("stream") == "stdout"]
    texts = [line["event"] for line in printed]
    assert texts.count("Loading function") == 1  # module code: once per worker process, not per invocation
    assert "Event: INSERT, Product ID: prod-123, Name: Wireless Mouse, Price: 25.99" in texts
    assert "No NewImage found in record." in texts
    invocations = [line for line in printed if line["event"].startswith("Processing record")]
    assert len({line["aws_request_id"] for line in invocations}) == 2
    assert all(line["function_name"] == "handler" and line["worker_pid"] for line in invocations)


def test_batch_item_failures_resend_from_the_lowest_failed_record(sinks: list[HandlerSink], tmp_path: Path) -> None:
    sink = _sink(
        sinks,
        tmp_path,
        "def handler(event, context):\n"
        "    return {'batchItemFailures': [{'itemIdentifier': r['dynamodb']['SequenceNumber']}\n"
        "            for r in event['Records'] if r['eventName'] == 'MODIFY']}\n",
        function_response_types=REPORT,
    )
    failures = sink.send(_messages(*ALL))
    assert [f.message.event.sequence_number for f in failures] == ["2", "3", "4"]
    assert all(type(f.error) is TransientDeliveryError for f in failures)


def test_without_report_batch_item_failures_the_response_is_ignored_as_lambda_ignores_it(
    sinks: list[HandlerSink], tmp_path: Path
) -> None:
    sink = _sink(
        sinks,
        tmp_path,
        "def handler(event, context):\n"
        "    return {'batchItemFailures': [{'itemIdentifier': r['dynamodb']['SequenceNumber']}\n"
        "            for r in event['Records']]}\n",
    )
    assert sink.send(_messages(*ALL)) == ()


def test_unknown_identifier_fails_the_whole_batch(sinks: list[HandlerSink], tmp_path: Path) -> None:
    sink = _sink(
        sinks,
        tmp_path,
        "def handler(event, context):\n    return {'batchItemFailures': [{'itemIdentifier': 'x'}]}\n",
        function_response_types=REPORT,
    )
    assert len(sink.send(_messages(*ALL))) == 4


def test_an_exception_is_a_function_error_and_the_worker_is_kept(sinks: list[HandlerSink], tmp_path: Path) -> None:
    sink = _sink(sinks, tmp_path, _pids_handler("raise ValueError('boom')"))
    for _ in range(2):
        with pytest.raises(FunctionError, match="ValueError: boom"):
            sink.send(_messages(INSERT))
    first, second = _pids(tmp_path)
    assert first == second  # Lambda keeps an environment whose handler raised


@pytest.mark.parametrize(
    "body",
    ["raise SystemExit(0)", "raise KeyboardInterrupt", "import asyncio; raise asyncio.CancelledError", "os._exit(0)"],
)
def test_base_exceptions_and_a_dying_worker_fail_the_invocation_and_get_a_fresh_worker(
    sinks: list[HandlerSink], tmp_path: Path, body: str
) -> None:
    sink = _sink(sinks, tmp_path, _pids_handler(body))
    with pytest.raises(FunctionError, match=r"SystemExit|KeyboardInterrupt|CancelledError|exited with status 0"):
        sink.send(_messages(INSERT))  # SystemExit(0) too: never delivered
    (tmp_path / "fn.py").write_text(_pids_handler("pass"))  # the fresh worker loads the module anew
    assert sink.send(_messages(INSERT)) == ()
    died, fresh = _pids(tmp_path)
    assert died != fresh
    assert _gone(died)


def test_a_timed_out_invocation_is_killed_and_the_next_one_gets_a_fresh_worker(
    sinks: list[HandlerSink], tmp_path: Path
) -> None:
    marker = tmp_path / "hang"
    code = _pids_handler(f"if os.path.exists({str(marker)!r}): time.sleep(60)")
    sink = _sink(sinks, tmp_path, code, timeout_seconds=0.5)
    assert sink.send(_messages(INSERT)) == ()  # the cold start (init) is not part of the invocation's timeout
    marker.touch()
    started = time.monotonic()
    with pytest.raises(FunctionError, match=r"timed out after 0.5 s"):
        sink.send(_messages(INSERT))
    # The parent never waits for the handler past its timeout: a generous bound, the machine may be busy.
    assert time.monotonic() - started < 0.5 + 3
    marker.unlink()
    assert sink.send(_messages(INSERT)) == ()  # no "still running": a fresh worker took it
    pids = _pids(tmp_path)
    hung, fresh = pids[-2], pids[-1]
    assert hung != fresh
    assert _gone(hung)


def test_each_lane_has_its_own_worker(sinks: list[HandlerSink], tmp_path: Path) -> None:
    sink = _sink(sinks, tmp_path, _pids_handler("time.sleep(0.3)"), timeout_seconds=5)
    errors: list[BaseException] = []

    def lane() -> None:
        try:
            sink.send(_messages(INSERT))
        except BaseException as error:  # noqa: BLE001 - reported by the test thread
            errors.append(error)

    lanes = [threading.Thread(target=lane) for _ in range(4)]
    for thread in lanes:
        thread.start()
    for thread in lanes:
        thread.join()
    assert errors == []
    assert len(set(_pids(tmp_path))) == 4


def test_the_context_has_lambdas_attributes(sinks: list[HandlerSink], tmp_path: Path) -> None:
    seen = tmp_path / "context.json"
    sink = _sink(
        sinks,
        tmp_path,
        "import json\n"
        "def handler(event, context):\n"
        "    names = ['function_name', 'function_version', 'invoked_function_arn', 'memory_limit_in_mb',\n"
        "             'aws_request_id', 'log_group_name', 'log_stream_name', 'identity', 'client_context']\n"
        "    values = {name: getattr(context, name) for name in names}\n"
        "    values['remaining'] = context.get_remaining_time_in_millis()\n"
        f"    open({str(seen)!r}, 'w').write(json.dumps(values))\n",
        function_name="products-fn",
        timeout_seconds=30,
        memory_limit_in_mb=256,
    )
    sink.send(_messages(INSERT))
    values = json.loads(seen.read_text())
    assert values["function_name"] == "products-fn"
    assert values["function_version"] == "$LATEST"
    assert values["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:products-fn"
    assert values["memory_limit_in_mb"] == 256
    assert len(values["aws_request_id"]) == 36
    assert values["log_group_name"] == "/aws/lambda/products-fn"
    assert "/[$LATEST]" in values["log_stream_name"]
    assert values["identity"] is None
    assert values["client_context"] is None
    assert 0 < values["remaining"] <= 30_000


def test_a_handler_editing_its_event_cannot_change_the_retry(sinks: list[HandlerSink], tmp_path: Path) -> None:
    sink = _sink(
        sinks,
        tmp_path,
        "import os\n"
        "def handler(event, context):\n"
        "    image = event['Records'][0]['dynamodb']['NewImage']\n"
        "    with open(os.path.join(os.path.dirname(__file__), 'seen.txt'), 'a') as out:\n"
        "        out.write(','.join(sorted(image)) + '\\n')\n"
        "    image.pop('price')\n",
    )
    sink.send(_messages(INSERT))
    sink.send(_messages(INSERT))
    assert (tmp_path / "seen.txt").read_text().split() == ["name,price,productId"] * 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resident memory is read from /proc")
def test_an_enforced_memory_limit_kills_the_worker(sinks: list[HandlerSink], tmp_path: Path) -> None:
    code = _pids_handler("if not os.path.exists(__file__ + '.small'): hog = bytearray(400 << 20); time.sleep(5)")
    sink = _sink(sinks, tmp_path, code, memory_limit_in_mb=128, enforce_memory_limit=True, timeout_seconds=30)
    with pytest.raises(FunctionError, match=r"exceeded memory_limit_in_mb \(128 MB"):
        sink.send(_messages(INSERT))
    Path(f"{tmp_path / 'fn.py'}.small").touch()
    assert sink.send(_messages(INSERT)) == ()
    big, small = _pids(tmp_path)
    assert big != small
    assert _gone(big)


def test_a_handler_that_cannot_load_is_refused_with_one_line_and_never_loaded_here(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="cannot load handler"):
        load_handler("no_such_module_xyz:handler")
    with pytest.raises(StartupError, match="cannot load handler"):
        load_handler(f"{tmp_path / 'absent.py'}:handler")
    (tmp_path / "broken_at_import.py").write_text("raise RuntimeError('no credentials')\ndef handler(e, c): pass\n")
    config = HandlerSinkConfig(type="handler", handler=f"{tmp_path / 'broken_at_import.py'}:handler")
    with pytest.raises(StartupError, match=r"failed while loading: RuntimeError: no credentials$") as caught:
        check_handler(config)
    assert "\n" not in str(caught.value)
    assert "broken_at_import" not in sys.modules
    (tmp_path / "fine.py").write_text("def handler(e, c): pass\n")
    check_handler(HandlerSinkConfig(type="handler", handler=f"{tmp_path / 'fine.py'}:handler"))
    assert "fine" not in sys.modules


def test_a_module_failing_at_runtime_is_a_function_error(sinks: list[HandlerSink], tmp_path: Path) -> None:
    sink = _sink(sinks, tmp_path, "def handler(event, context):\n    pass\n")
    (tmp_path / "fn.py").write_text("import no_such_dependency_xyz\n")  # changed after the start-up check
    with pytest.raises(FunctionError, match="ModuleNotFoundError"):
        sink.send(_messages(INSERT))


def test_consumer_run_refuses_a_handler_that_cannot_load_before_the_engine_starts(tmp_path: Path) -> None:
    from consumer.config import config_from_mapping  # noqa: PLC0415
    from consumer.supervisor import _check_handlers  # noqa: PLC0415

    (tmp_path / "typo.py").write_text("def handler(event, context):\n    pass\n")
    config = config_from_mapping(
        {
            "application_name": "app",
            "source": {"table_name": "products", "region": "us-east-1"},
            "sinks": [{"type": "handler", "handler": f"{tmp_path / 'typo.py'}:hanlder"}],
        },
        environ={},
    )
    with pytest.raises(StartupError, match=r"^cannot load handler .*typo.py:hanlder'.*AttributeError") as caught:
        _check_handlers(config)
    assert "\n" not in str(caught.value)
