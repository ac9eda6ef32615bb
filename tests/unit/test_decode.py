from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from samples import STREAM_ARN

from consumer.decode import decode_record, decode_value, encode_value
from consumer.errors import DecodeError
from consumer.events import MISSING, EventName, StreamContext, table_of, values_differ
from consumer.formats import plain, plain_json, to_lambda_record
from consumer.jsontext import dumps

CONTEXT = StreamContext(stream_arn=STREAM_ARN, region="us-east-1")


def _decode(record: dict[str, Any]) -> Any:
    return decode_record(json.dumps(record).encode(), CONTEXT)


def test_every_dynamodb_type_decodes_exactly(load_fixture: Any) -> None:
    event = _decode(load_fixture("all_types_record.json"))
    new = event.new_image
    assert event.event_name is EventName.MODIFY
    assert event.table == "products"
    assert event.keys == {"productId": "prod-123"}
    assert new["price"] == Decimal("19.99")
    # 38 significant digits survive: no float anywhere on the way.
    assert str(new["stock"]) == "12345678901234567890123456789012345678"
    assert new["tiny"] == Decimal("-1E-36")
    assert new["thumbnail"] == b"\x00\x01\x02\x03\xff"
    assert new["active"] is True
    assert new["discontinued"] is None
    assert new["tags"] == frozenset({"usb", "wireless"})
    assert new["sizes"] == frozenset({Decimal(1), Decimal("2.5"), Decimal(10)})
    assert new["blobs"] == frozenset({b"\x01", b"\x02"})
    assert new["dimensions"] == {"width": Decimal("6.2"), "box": {"depth": Decimal(3), "unit": "cm"}}
    assert new["history"] == [Decimal("25.99"), "sale", False, [], {}]
    assert event.sequence_number == "1100000000017454423010"
    assert event.size_bytes == 812
    assert event.approximate_creation == datetime(2024, 11, 28, 13, 20, 0, 123000, tzinfo=UTC)
    assert event.user_identity is None
    assert not event.is_ttl_delete


def test_changed_lists_only_attributes_that_differ(load_fixture: Any) -> None:
    event = _decode(load_fixture("all_types_record.json"))
    # Sets in another order are the same set; an added and a removed attribute both count as changed.
    assert event.changed == ("category", "legacyCode", "price")


def test_changed_distinguishes_a_bool_from_a_number() -> None:
    record = _record("MODIFY", old={"k": {"S": "a"}, "flag": {"N": "1"}}, new={"k": {"S": "a"}, "flag": {"BOOL": True}})
    assert _decode(record).changed == ("flag",)


def test_ttl_delete_is_recognised_and_empty_new_image_is_absent(load_fixture: Any) -> None:
    event = _decode(load_fixture("ttl_delete_record.json"))
    assert event.event_name is EventName.REMOVE
    assert event.is_ttl_delete
    assert event.new_image is None
    assert event.old_image == {"productId": "prod-9", "expiresAt": Decimal(1732800000)}
    assert event.image == event.old_image


def test_lambda_shape_has_arn_and_creation_time_in_seconds(load_fixture: Any) -> None:
    raw = load_fixture("ttl_delete_record.json")
    lambda_record = to_lambda_record(_decode(raw), CONTEXT)
    assert lambda_record["eventSourceARN"] == STREAM_ARN
    creation = lambda_record["dynamodb"]["ApproximateCreationDateTime"]
    assert creation == 1732800001.0
    assert type(creation) is float
    assert lambda_record["dynamodb"]["Keys"] == raw["dynamodb"]["Keys"]
    assert lambda_record["userIdentity"] == {"principalId": "dynamodb.amazonaws.com", "type": "Service"}
    assert lambda_record["eventSource"] == "aws:dynamodb"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe not utf-8", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"eventName": "INSERT"}', "dynamodb is missing"),
        (
            json.dumps({"eventName": "INSERT", "dynamodb": {"Keys": {"k": {"S": "a"}}}}).encode(),
            "eventID is missing",
        ),
        (json.dumps({"eventID": "e", "eventName": "UPSERT", "dynamodb": {}}).encode(), "unknown eventName"),
    ],
)
def test_malformed_records_raise_decode_error(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_record(data, CONTEXT)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ({"N": "abc"}, "not a number"),
        ({"N": "NaN"}, "not a finite number"),
        ({"B": "***"}, "invalid base64"),
        ({"X": "?"}, "unknown DynamoDB type"),
        ({"S": "a", "N": "1"}, "one DynamoDB type descriptor"),
        ({"NULL": False}, "NULL must be true"),
    ],
)
def test_malformed_values_raise_decode_error(typed: dict[str, Any], message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_value(typed)


def test_table_of_rejects_non_stream_arns() -> None:
    assert table_of(STREAM_ARN) == "products"
    with pytest.raises(ValueError, match="not a DynamoDB stream ARN"):
        table_of("arn:aws:kinesis:us-east-1:123456789012:stream/products")


_decimals = st.decimals(allow_nan=False, allow_infinity=False)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=20),
    _decimals,
    st.binary(max_size=16),
    st.frozensets(st.text(max_size=8), min_size=1, max_size=4),
    st.frozensets(_decimals, min_size=1, max_size=4),
    st.frozensets(st.binary(max_size=8), min_size=1, max_size=4),
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_values)
def test_encode_then_decode_round_trips_exactly(value: Any) -> None:
    wire = json.loads(json.dumps(encode_value(value)))
    decoded = decode_value(wire)
    # dumps writes Decimals digit for digit and types distinctly, so equal text means an exact round trip.
    assert dumps(decoded) == dumps(value)
    assert type(decoded) is type(value)


def _record(event_name: str, *, old: dict[str, Any] | None = None, new: dict[str, Any] | None = None) -> dict[str, Any]:
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": 1732800000000,
        "Keys": {"k": {"S": "a"}},
        "SequenceNumber": "1",
        "SizeBytes": 1,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if old is not None:
        dynamodb["OldImage"] = old
    if new is not None:
        dynamodb["NewImage"] = new
    return {"eventID": "e1", "eventName": event_name, "dynamodb": dynamodb}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30,
)
_record_like = st.fixed_dictionaries(
    {"eventID": _json, "eventName": st.sampled_from(["INSERT", "MODIFY", "REMOVE", "X"]) | _json},
    optional={
        "dynamodb": st.fixed_dictionaries(
            {},
            optional={
                "Keys": _json,
                "NewImage": _json,
                "OldImage": _json,
                "SequenceNumber": _json,
                "ApproximateCreationDateTime": _json,
                "SizeBytes": _json,
            },
        ),
        "userIdentity": _json,
    },
)


@given(st.one_of(_record_like, _json))
def test_any_json_either_decodes_or_raises_decode_error(value: Any) -> None:
    with contextlib.suppress(DecodeError):  # anything else fails the test
        event = decode_record(json.dumps(value).encode(), CONTEXT)
        for image in (event.new, event.old):
            if image is not None:
                with contextlib.suppress(DecodeError):
                    assert image.json.keys() == image.values.keys() == image.typed.keys()
        with contextlib.suppress(DecodeError):
            assert all(isinstance(name, str) for name in event.changed)


@given(st.binary(max_size=64))
def test_any_bytes_either_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):  # anything else fails the test
        decode_record(data, CONTEXT)


@pytest.mark.parametrize(
    "patch",
    [
        {"SizeBytes": None},
        {"SizeBytes": "big"},
        {"ApproximateCreationDateTime": 1e300},
    ],
)
def test_odd_field_values_are_decode_errors(patch: dict[str, Any]) -> None:
    record = _record("INSERT", new={"k": {"S": "a"}})
    record["dynamodb"].update(patch)
    with pytest.raises(DecodeError):
        _decode(record)


def test_a_malformed_image_is_found_on_first_use_and_passes_through_the_lambda_shape() -> None:
    record = _record("MODIFY", old={"k": {"B": "AA=="}}, new={"k": {"B": "é"}})
    event = _decode(record)
    # As Lambda does, the Lambda shape carries the image as the stream sent it.
    assert to_lambda_record(event, CONTEXT)["dynamodb"]["NewImage"] == {"k": {"B": "é"}}
    for use in (lambda: event.new_image, lambda: event.new.json if event.new else None):
        with pytest.raises(DecodeError, match=r"NewImage\.k: invalid base64"):
            use()
    with pytest.raises(DecodeError, match=r"NewImage\.k: invalid base64"):
        assert event.changed
    assert event.old_image == {"k": b"\x00"}


def test_nan_is_not_a_number_here() -> None:
    with pytest.raises(DecodeError, match="not JSON"):
        decode_record(b'{"eventID": NaN}', CONTEXT)


_images = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), _values, min_size=1, max_size=4)


@given(_images, _images)
def test_the_fast_forms_agree_with_the_decoded_values(old: dict[str, Any], new: dict[str, Any]) -> None:
    wire = json.loads(
        json.dumps(
            _record(
                "MODIFY",
                old={name: encode_value(value) for name, value in old.items()},
                new={name: encode_value(value) for name, value in new.items()},
            )
        )
    )
    event = _decode(wire)
    assert event.new is not None
    assert event.old is not None
    # The plain format writes the JSON-ready form: the same text as the decoded values would give.
    assert dumps(event.new.json) == dumps(event.new_image)
    assert dumps(plain_json(event)) == dumps(plain(event))
    # `changed` compares the DynamoDB JSON first: the same names as a comparison of every decoded value.
    names = old.keys() | new.keys()
    before, after = event.old_image, event.new_image
    expected = sorted(n for n in names if values_differ(before.get(n, MISSING), after.get(n, MISSING)))
    assert list(event.changed) == expected
