from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from samples import STREAM_ARN

from consumer.config import HandlerSinkConfig, config_from_mapping
from consumer.decode import StreamContext, decode_record
from consumer.errors import ConfigError
from consumer.events import ChangeEvent
from consumer.router import Router
from consumer.sinks.base import Message
from consumer.sinks.handler import HandlerSink, load_handler

CONTEXT = StreamContext(stream_arn=STREAM_ARN, region="us-east-1")
SEED_HANDLER = Path(__file__).parents[2] / "config" / "handlers" / "lambda_function.py"


def _event(
    event_name: str, sequence: str, *, new: dict[str, Any] | None, old: dict[str, Any] | None = None
) -> ChangeEvent:
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": 1732800000000,
        "Keys": {"productId": {"S": "prod-123"}},
        "SequenceNumber": sequence,
        "SizeBytes": 10,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    # As the adapter sends them: an absent image is an empty map.
    dynamodb["NewImage"] = new or {}
    dynamodb["OldImage"] = old or {}
    record = {"eventID": f"id-{sequence}", "eventName": event_name, "eventVersion": "1.1", "dynamodb": dynamodb}
    return decode_record(json.dumps(record).encode(), CONTEXT)


MOUSE = {"productId": {"S": "prod-123"}, "name": {"S": "Wireless Mouse"}, "price": {"N": "25.99"}}
CHEAPER = {**MOUSE, "price": {"N": "19.99"}}
RENAMED = {**MOUSE, "name": {"S": "Silent Mouse"}}
INSERT = _event("INSERT", "1", new=MOUSE)
PRICE_CHANGE = _event("MODIFY", "2", new=CHEAPER, old=MOUSE)
RENAME = _event("MODIFY", "3", new=RENAMED, old=MOUSE)
REMOVE = _event("REMOVE", "4", new=None, old=RENAMED)
ALL = [INSERT, PRICE_CHANGE, RENAME, REMOVE]


def _router(routes: list[dict[str, Any]], unmatched: str = "drop") -> Router:
    config = config_from_mapping(
        {
            "application_name": "app",
            "source": {"table_name": "products", "region": "us-east-1"},
            "sinks": [{"type": "memory", "name": n} for n in ("a", "b", "c")],
            "routes": routes,
            "unmatched": unmatched,
        },
        environ={},
    )
    return Router.from_config(config, CONTEXT)


def _sequences(messages: list[Message]) -> list[str]:
    return [m.event.sequence_number for m in messages]


def test_lambda_filter_criteria_pasted_as_is() -> None:
    criteria = {"Filters": [{"Pattern": json.dumps({"eventName": ["INSERT", "REMOVE"]})}]}
    routed = _router([{"name": "r", "sinks": ["a"], "filter": {"filter_criteria": criteria}}]).route(ALL)
    assert _sequences(routed.by_sink["a"]) == ["1", "4"]
    assert routed.unmatched == 2


def test_typed_lambda_pattern_on_the_new_image() -> None:
    # As in Lambda: "N" values are strings in the record, so a numeric condition never matches them; `where` sees
    # the plain values, where numbers are numbers.
    pattern = {"dynamodb": {"NewImage": {"price": {"N": [{"numeric": ["<", 20]}]}}}}
    routed = _router([{"name": "cheap", "sinks": ["a"], "filter": {"patterns": [pattern]}}]).route(ALL)
    assert "a" not in routed.by_sink
    where = {"new": {"price": [{"numeric": ["<", 20]}]}}
    routed = _router([{"name": "cheap", "sinks": ["a"], "filter": {"where": [where]}}]).route(ALL)
    assert _sequences(routed.by_sink["a"]) == ["2"]


def test_changed_attribute_rule() -> None:
    routed = _router([{"name": "price", "sinks": ["a"], "filter": {"changed": ["price"]}}]).route(ALL)
    assert _sequences(routed.by_sink["a"]) == ["2"]


def test_condition_on_plain_values() -> None:
    where = [{"eventName": ["MODIFY"], "new": {"name": [{"prefix": "Silent"}]}}]
    routed = _router([{"name": "r", "sinks": ["a"], "filter": {"where": where}}]).route(ALL)
    assert _sequences(routed.by_sink["a"]) == ["3"]


def test_fan_out_and_default_route() -> None:
    routes = [
        {"name": "inserts", "sinks": ["a", "b"], "filter": {"patterns": [{"eventName": ["INSERT"]}]}},
        {"name": "everything-modify", "sinks": ["b"], "filter": {"patterns": [{"eventName": ["MODIFY"]}]}},
        {"name": "rest", "sinks": ["c"], "filter": {"patterns": [{"eventName": ["NONE"]}]}},
    ]
    routed = _router(routes, unmatched="rest").route(ALL)
    assert _sequences(routed.by_sink["a"]) == ["1"]
    assert _sequences(routed.by_sink["b"]) == ["1", "2", "3"]  # stream order kept across routes
    assert _sequences(routed.by_sink["c"]) == ["4"]
    assert routed.unmatched == 1


def test_formats_lambda_plain_and_template() -> None:
    routes = [
        {"name": "l", "sinks": ["a"], "format": "lambda"},
        {"name": "p", "sinks": ["b"], "format": "plain"},
        {
            "name": "t",
            "sinks": ["c"],
            "format": "template",
            "content_type": "application/json",
            "template": '{"text": {{ ("New product added: " ~ new.name) | tojson }}, "price": {{ new.price }}}',
        },
    ]
    routed = _router(routes).route([INSERT])
    lambda_record = json.loads(routed.by_sink["a"][0].body)
    assert lambda_record["eventSourceARN"] == STREAM_ARN
    assert lambda_record["dynamodb"]["ApproximateCreationDateTime"] == 1732800000.0
    assert lambda_record["dynamodb"]["NewImage"]["price"] == {"N": "25.99"}
    assert json.loads(routed.by_sink["b"][0].body)["new"]["price"] == 25.99
    slack = routed.by_sink["c"][0]
    assert slack.body == '{"text": "New product added: Wireless Mouse", "price": 25.99}'
    assert slack.content_type == "application/json"


def test_template_failing_for_one_event_is_a_permanent_failure_not_a_crash() -> None:
    routes = [{"name": "t", "sinks": ["a"], "format": "template", "template": "{{ new.name }} removed"}]
    routed = _router(routes).route([INSERT, REMOVE])
    assert [m.body for m in routed.by_sink["a"]] == ["Wireless Mouse removed"]
    (failure,) = routed.unrenderable
    assert failure.message.event is REMOVE
    assert "cannot render: UndefinedError" in str(failure.error)


def test_template_is_sandboxed() -> None:
    routes = [{"name": "t", "sinks": ["a"], "format": "template", "template": "{{ new.__class__.__mro__ }}"}]
    routed = _router(routes).route([INSERT])
    assert routed.unrenderable


@pytest.mark.parametrize(
    ("routes", "extra", "path", "text"),
    [
        ([{"name": "r", "sinks": ["nope"]}], {}, "routes.0.sinks.0", "no sink is named 'nope'"),
        (
            [{"name": "r", "sinks": ["a"], "filter": {"patterns": [{"eventName": [{"prefx": "I"}]}]}}],
            {},
            "routes.0.filter.patterns",
            "unknown operator 'prefx'",
        ),
        (
            [{"name": "r", "sinks": ["a"], "format": "template", "template": "{{ new.name "}],
            {},
            "routes.0.template",
            "template syntax error",
        ),
        ([{"name": "r", "sinks": ["a"], "format": "template"}], {}, "routes.0", "needs a template"),
        ([{"name": "r", "sinks": ["a"]}], {"unmatched": "elsewhere"}, "unmatched", "'drop' or the name of a route"),
        ([{"name": "r", "sinks": ["a"]}], {"sinks": [{"type": "pager", "name": "a"}]}, "sinks.0", "pager"),
        (
            [{"name": "r", "sinks": ["a"]}],
            {"sinks": [{"type": "webhook", "name": "a", "url": "http://x", "secret": {"env": "HOOK_SECRET"}}]},
            "sinks.0.secret",
            "environment variable HOOK_SECRET is not set",
        ),
    ],
)
def test_route_and_sink_problems_are_named_by_field_path(
    routes: list[dict[str, Any]], extra: dict[str, Any], path: str, text: str
) -> None:
    data = {
        "application_name": "app",
        "source": {"table_name": "products", "region": "us-east-1"},
        "sinks": [{"type": "memory", "name": "a"}],
        "routes": routes,
        **extra,
    }
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(data, environ={})
    problems = {p.path: p.message for p in caught.value.problems}
    assert path in problems, problems
    assert text in problems[path]


def test_the_seed_handler_runs_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    sink = HandlerSink(HandlerSinkConfig(type="handler", handler=f"{SEED_HANDLER}:lambda_handler"), CONTEXT)
    messages = [Message(e, "r", "", "application/json") for e in (INSERT, PRICE_CHANGE, REMOVE)]
    assert sink.send(messages) == ()
    out = capsys.readouterr().out
    assert "New product added: Wireless Mouse" in out
    assert "Event: INSERT, Product ID: prod-123, Name: Wireless Mouse, Price: 25.99" in out
    assert "Product updated: Wireless Mouse" in out
    assert "No NewImage found in record." in out


def _handler_sink(tmp_path: Path, code: str) -> HandlerSink:
    (tmp_path / "fn.py").write_text(code)
    return HandlerSink(HandlerSinkConfig(type="handler", handler=f"{tmp_path / 'fn.py'}:handler"), CONTEXT)


def test_handler_batch_item_failures_resend_from_the_lowest_failed_record(tmp_path: Path) -> None:
    sink = _handler_sink(
        tmp_path,
        "def handler(event, context):\n"
        "    assert context.get_remaining_time_in_millis() > 0 and context.aws_request_id\n"
        "    return {'batchItemFailures': [{'itemIdentifier': r['dynamodb']['SequenceNumber']}\n"
        "            for r in event['Records'] if r['eventName'] == 'MODIFY']}\n",
    )
    messages = [Message(e, "r", "", "application/json") for e in ALL]
    failures = sink.send(messages)
    assert [f.message.event.sequence_number for f in failures] == ["2", "3", "4"]


def test_handler_exception_is_a_function_error_retried_like_a_transient_one(tmp_path: Path) -> None:
    sink = _handler_sink(tmp_path, "def handler(event, context):\n    raise ValueError('boom')\n")
    from consumer.errors import FunctionError, TransientDeliveryError  # noqa: PLC0415

    with pytest.raises(FunctionError, match="ValueError: boom") as caught:
        sink.send([Message(INSERT, "r", "", "application/json")])
    assert isinstance(caught.value, TransientDeliveryError)


def test_unknown_identifier_fails_the_whole_batch(tmp_path: Path) -> None:
    sink = _handler_sink(
        tmp_path, "def handler(event, context):\n    return {'batchItemFailures': [{'itemIdentifier': 'x'}]}\n"
    )
    failures = sink.send([Message(e, "r", "", "application/json") for e in ALL])
    assert len(failures) == 4


def test_handler_that_cannot_load_is_a_startup_error(tmp_path: Path) -> None:
    from consumer.errors import StartupError  # noqa: PLC0415

    with pytest.raises(StartupError, match="cannot load handler"):
        load_handler("no_such_module_xyz:handler")
    with pytest.raises(StartupError, match="cannot load handler"):
        load_handler(f"{tmp_path / 'absent.py'}:handler")


def test_lambda_format_leaves_out_absent_images_like_lambda() -> None:
    routed = _router([{"name": "l", "sinks": ["a"], "format": "lambda"}]).route([INSERT, REMOVE])
    insert, remove = (json.loads(m.body)["dynamodb"] for m in routed.by_sink["a"])
    assert "OldImage" not in insert
    assert "NewImage" in insert
    assert "NewImage" not in remove
    assert "OldImage" in remove


def test_a_sink_takes_an_event_once_through_the_first_matching_route() -> None:
    routes = [
        {"name": "price", "sinks": ["a"], "filter": {"changed": ["price"]}},
        {"name": "modify", "sinks": ["a", "b"], "filter": {"patterns": [{"eventName": ["MODIFY"]}]}},
    ]
    routed = _router(routes).route(ALL)
    assert [(m.event.sequence_number, m.route) for m in routed.by_sink["a"]] == [
        ("2", "price"),
        ("3", "modify"),
    ]
    assert _sequences(routed.by_sink["b"]) == ["2", "3"]


def test_a_route_may_not_name_a_sink_twice() -> None:
    with pytest.raises(ConfigError, match="a sink is named twice"):
        _router([{"name": "r", "sinks": ["a", "a"]}])


@pytest.mark.parametrize(
    "template",
    [
        "{{ 1 / (new.price - new.price) }}",  # DivisionByZero, not a Jinja error
        "{{ new.name + 1 }}",  # TypeError
        '{"text": "{{ new.name }}"}',  # JSON content type, but the data is not escaped
    ],
)
def test_any_template_failure_is_that_events_permanent_failure(template: str) -> None:
    name_with_quote = _event("INSERT", "9", new={**MOUSE, "name": {"S": 'The "Pro" Mouse'}})
    routes = [
        {"name": "t", "sinks": ["a"], "format": "template", "template": template, "content_type": "application/json"}
    ]
    routed = _router(routes).route([name_with_quote])
    (failure,) = routed.unrenderable
    assert "cannot render" in str(failure.error)


def test_a_handler_editing_its_event_cannot_change_the_retry(tmp_path: Path) -> None:
    sink = _handler_sink(
        tmp_path,
        "seen = []\n"
        "def handler(event, context):\n"
        "    record = event['Records'][0]\n"
        "    seen.append(sorted(record['dynamodb']['NewImage']))\n"
        "    record['dynamodb']['NewImage'].pop('price')\n"
        "    return {'batchItemFailures': [{'itemIdentifier': record['dynamodb']['SequenceNumber']}]}\n",
    )
    message = Message(INSERT, "r", "", "application/json")
    sink.send([message])
    sink.send([message])
    import fn  # noqa: PLC0415 - the handler module the sink loaded

    assert fn.seen == [["name", "price", "productId"], ["name", "price", "productId"]]


def test_handler_past_its_timeout_is_a_failed_invocation(tmp_path: Path) -> None:
    import time  # noqa: PLC0415

    from consumer.errors import FunctionError, TransientDeliveryError  # noqa: PLC0415

    (tmp_path / "slow.py").write_text("import time\ndef handler(event, context):\n    time.sleep(1.5)\n")
    config = HandlerSinkConfig(type="handler", handler=f"{tmp_path / 'slow.py'}:handler", timeout_seconds=0.3)
    sink = HandlerSink(config, CONTEXT)
    message = Message(INSERT, "r", "", "application/json")
    started = time.monotonic()
    with pytest.raises(FunctionError, match=r"timed out after 0.3 s"):  # Lambda counts a timeout as one
        sink.send([message])
    assert time.monotonic() - started < 1.0
    # Not the records' doing but the previous run's: transient, and not a reason to split the batch.
    with pytest.raises(TransientDeliveryError, match="still running") as caught:
        sink.send([message])
    assert not isinstance(caught.value, FunctionError)
    time.sleep(1.5)
    with pytest.raises(FunctionError, match="timed out"):  # a new run, which overruns again
        sink.send([message])


def test_a_malformed_image_fails_only_the_routes_that_read_it() -> None:
    broken = _event("MODIFY", "9", new={**MOUSE, "price": {"N": "cheap"}}, old=MOUSE)
    routes = [
        {"name": "l", "sinks": ["a"], "format": "lambda"},
        {"name": "p", "sinks": ["b"], "format": "plain"},
    ]
    routed = _router(routes).route([broken, INSERT])
    # The Lambda shape passes the image through untouched, as Lambda would.
    assert json.loads(routed.by_sink["a"][0].body)["dynamodb"]["NewImage"]["price"] == {"N": "cheap"}
    assert _sequences(routed.by_sink["b"]) == ["1"]
    (failure,) = routed.unrenderable
    assert failure.message.event is broken
    assert "NewImage.price: not a number" in str(failure.error)


def test_a_filter_that_cannot_read_a_record_fails_it_and_routes_the_rest() -> None:
    broken = _event("MODIFY", "9", new={**MOUSE, "price": {"N": "cheap"}}, old=MOUSE)
    routed = _router([{"name": "c", "sinks": ["a"], "filter": {"changed": ["price"]}}]).route([broken, PRICE_CHANGE])
    assert _sequences(routed.by_sink["a"]) == ["2"]
    (failure,) = routed.unrenderable
    assert failure.message.event is broken
    assert "cannot filter: DecodeError" in str(failure.error)
