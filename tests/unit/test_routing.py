from __future__ import annotations

import json
from typing import Any

import pytest
from samples import STREAM_ARN

from consumer.config import config_from_mapping
from consumer.decode import decode_record
from consumer.errors import ConfigError
from consumer.events import ChangeEvent, StreamContext
from consumer.router import Router
from consumer.sinks.base import Message

CONTEXT = StreamContext(stream_arn=STREAM_ARN, region="us-east-1")


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
