"""The payload formats' registry: every format the configuration accepts renders, with its content type, and
only a format that is not JSON by construction has its output checked as JSON."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from samples import STREAM_ARN

from consumer import formats
from consumer.decode import decode_record
from consumer.events import StreamContext

CONTEXT = StreamContext(stream_arn=STREAM_ARN, region="us-east-1")
EVENT = decode_record(
    json.dumps(
        {
            "eventID": "id-1",
            "eventName": "INSERT",
            "eventVersion": "1.1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1732800000000,
                "Keys": {"productId": {"S": "prod-123"}},
                "NewImage": {"productId": {"S": "prod-123"}, "price": {"N": "25.99"}},
                "SequenceNumber": "1",
                "SizeBytes": 10,
                "StreamViewType": "NEW_IMAGE",
            },
        }
    ).encode(),
    CONTEXT,
)
TEMPLATE = '{"id": {{ keys.productId | tojson }}}'


def test_the_configuration_accepts_exactly_the_registered_formats() -> None:
    assert set(get_args(formats.FormatName)) == set(formats.FORMATS)
    assert all(name == payload_format.name for name, payload_format in formats.FORMATS.items())


@pytest.mark.parametrize("name", sorted(formats.FORMATS))
def test_every_format_renders_an_event(name: str) -> None:
    template = TEMPLATE if name == "template" else None
    body = formats.renderer(name, CONTEXT, template)(EVENT)
    if formats.FORMATS[name].json_by_construction:
        assert isinstance(json.loads(body), dict)
    assert body


def test_content_types_and_json_checks() -> None:
    assert formats.content_type("plain", None) == formats.JSON
    assert formats.content_type("lambda", None) == formats.JSON
    assert formats.content_type("template", None) == formats.TEXT
    assert formats.content_type("template", "application/xml") == "application/xml"
    assert formats.must_check_json("template", formats.JSON)
    assert not formats.must_check_json("template", formats.TEXT)
    assert not formats.must_check_json("plain", formats.JSON)
    assert not formats.must_check_json("lambda", formats.JSON)
    assert [name for name, payload in formats.FORMATS.items() if payload.takes_template] == ["template"]


def test_an_unknown_format_and_a_template_format_without_a_template_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        formats.renderer("xml", CONTEXT)
    with pytest.raises(ValueError, match="needs a template"):
        formats.renderer("template", CONTEXT)
