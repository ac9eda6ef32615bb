"""The `lambda` format against real sample events from public Lambda runtimes (tests/fixtures/lambda-samples):
each record, sent through the adapter's shape, decoded and rendered again, must come out field by field the same,
types included."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from consumer.decode import event_from_record
from consumer.events import StreamContext
from consumer.formats import to_lambda_record
from consumer.jsontext import dumps

SAMPLES = Path(__file__).parents[1] / "fixtures" / "lambda-samples"
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Example/stream/2016-12-01T00:00:00.000"


def _records() -> list[Any]:
    cases = []
    for path in sorted(SAMPLES.glob("*.json")):
        for i, record in enumerate(json.loads(path.read_text(encoding="utf-8"))["Records"]):
            # A record without a creation time cannot come from the stream (the adapter and Lambda always give one).
            if "ApproximateCreationDateTime" in record["dynamodb"]:
                cases.append(pytest.param(record, id=f"{path.stem}[{i}]"))
    return cases


def _as_adapter_sends(record: dict[str, Any]) -> dict[str, Any]:
    # The Streams adapter sends the SDK's record: creation time in epoch milliseconds, no eventSourceARN.
    adapter = copy.deepcopy(record)
    adapter.pop("eventSourceARN", None)
    adapter["dynamodb"]["ApproximateCreationDateTime"] = int(record["dynamodb"]["ApproximateCreationDateTime"] * 1000)
    return adapter


def _fields(value: Any, path: str = "") -> dict[str, tuple[type, Any]]:
    """Every leaf by path, with its JSON type."""
    if isinstance(value, dict):
        found: dict[str, tuple[type, Any]] = {}
        for key, child in value.items():
            found.update(_fields(child, f"{path}.{key}" if path else key))
        return found
    if isinstance(value, list):
        found = {}
        for i, child in enumerate(value):
            found.update(_fields(child, f"{path}[{i}]"))
        return found
    return {path: (type(value), value)}


@pytest.mark.parametrize("record", _records())
def test_lambda_format_renders_sample_records_field_by_field(record: dict[str, Any]) -> None:
    arn = record.get("eventSourceARN", "")
    # The powertools sample's ARN is a placeholder; the format writes the stream's own ARN.
    context = StreamContext(stream_arn=arn if arn.startswith("arn:aws:dynamodb:") else ARN, region=record["awsRegion"])
    ours = json.loads(dumps(to_lambda_record(event_from_record(_as_adapter_sends(record), context), context)))
    expected = copy.deepcopy(record)
    expected["eventSourceARN"] = context.stream_arn
    # As AWS sends it (the samples were written by hand, with an integer or sub-second digits): whole seconds as a
    # number with a fraction.
    expected["dynamodb"]["ApproximateCreationDateTime"] = float(int(record["dynamodb"]["ApproximateCreationDateTime"]))
    assert _fields(ours) == _fields(expected)
