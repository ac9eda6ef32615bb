"""Adapter record bytes -> ChangeEvent (the way back, to the record as Lambda delivers it, is consumer.formats).

The Streams adapter sends, per record, the JSON of the SDK's stream `Record`: Lambda's field names, but
ApproximateCreationDateTime in epoch *milliseconds* and no eventSourceARN.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from consumer.errors import DecodeError
from consumer.events import (
    ChangeEvent,
    EventName,
    Image,
    Item,
    PlainValue,
    StreamContext,
    UserIdentity,
    values_differ,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EVENT_NAMES = {name.value: name for name in EventName}


def decode_record(data: bytes, context: StreamContext) -> ChangeEvent:
    """Decode the adapter's JSON (already base64-decoded by kclpy) into a ChangeEvent."""
    try:
        # Attribute numbers are strings in DynamoDB JSON ({"N": "25.99"}), decoded to Decimal below; the adapter's
        # own numbers (size, creation time) are integers. orjson refuses NaN, Infinity and invalid UTF-8.
        record = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise DecodeError(f"record is not JSON: {error}") from error
    if not isinstance(record, dict):
        raise DecodeError("record is not a JSON object")
    try:
        return event_from_record(record, context)
    except DecodeError:
        raise
    except (ValueError, TypeError, ArithmeticError, OverflowError) as error:
        # Whatever the shape checks did not anticipate is still a bad record, never a crash.
        raise DecodeError(f"malformed record: {type(error).__name__}: {error}") from error


def event_from_record(record: Mapping[str, Any], context: StreamContext) -> ChangeEvent:
    dynamodb = _field(record, "dynamodb", dict)
    name = record.get("eventName")
    event_name = _EVENT_NAMES.get(name) if type(name) is str else None
    if event_name is None:
        raise DecodeError(f"unknown eventName {name!r}")
    keys = _image(dynamodb, "Keys")
    if keys is None:
        raise DecodeError("dynamodb.Keys is missing")
    # Keys are decoded at once: they are small, and ordering by item needs them for every record.
    identity = record.get("userIdentity")
    return ChangeEvent(
        event_id=_field(record, "eventID", str),
        event_name=event_name,
        table=context.table,
        sequence_number=_field(dynamodb, "SequenceNumber", str),
        approximate_creation=_creation_time(dynamodb.get("ApproximateCreationDateTime")),
        size_bytes=int(dynamodb.get("SizeBytes", 0)),
        keys=keys.values,
        new=_image(dynamodb, "NewImage"),
        old=_image(dynamodb, "OldImage"),
        stream_view_type=dynamodb.get("StreamViewType"),
        user_identity=(
            UserIdentity(principal_id=str(identity.get("principalId", "")), type=str(identity.get("type", "")))
            if isinstance(identity, dict)
            else None
        ),
        record=record,
    )


def _field(container: Mapping[str, Any], name: str, kind: type) -> Any:
    value = container.get(name)
    if not isinstance(value, kind):
        raise DecodeError(f"{name} is missing or not a {kind.__name__}")
    return value


def _creation_time(value: Any) -> datetime:
    if type(value) is int:  # what the adapter sends: epoch milliseconds
        try:
            return _EPOCH + timedelta(milliseconds=value)
        except OverflowError as error:
            raise DecodeError(f"ApproximateCreationDateTime is out of range: {value!r}") from error
    if value is None:
        raise DecodeError("dynamodb.ApproximateCreationDateTime is missing")
    try:
        millis = Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as error:
        raise DecodeError(f"ApproximateCreationDateTime is not a number: {value!r}") from error
    return _EPOCH + timedelta(microseconds=int(millis * 1000))


def _image(dynamodb: Mapping[str, Any], name: str) -> LazyImage | None:
    image = dynamodb.get(name)
    # The adapter serialises an absent image as {} (the SDK's empty auto-construct map); a real image is never
    # empty because it always holds the key attributes.
    if not image:
        return None
    if not isinstance(image, dict):
        raise DecodeError(f"dynamodb.{name} is not a map")
    return LazyImage(name, image)


class LazyImage:
    """consumer.events.Image over one image of a record: its forms are made on first use, then kept."""

    __slots__ = ("_json", "_values", "name", "typed")

    def __init__(self, name: str, typed: Mapping[str, Any]) -> None:
        self.name = name
        self.typed = typed
        self._json: Mapping[str, Any] | None = None
        self._values: Item | None = None

    @property
    def json(self) -> Mapping[str, Any]:
        if self._json is None:
            try:
                self._json = {attribute: _ready(typed) for attribute, typed in self.typed.items()}
            except _MalformedError:
                self._json = self._slowly()  # raises DecodeError naming the bad value
        return self._json

    @property
    def values(self) -> Item:
        if self._values is None:
            try:
                self._values = {attribute: _plain(typed) for attribute, typed in self.typed.items()}
            except _MalformedError:
                self._values = self._slowly()
        return self._values

    def changed_from(self, other: Image) -> tuple[str, ...]:
        mine, theirs = self.typed, other.typed
        changed = []
        for name in mine.keys() | theirs.keys():
            new, old = mine.get(name), theirs.get(name)
            # Equal DynamoDB JSON is an equal value, compared in C; most attributes of a MODIFY end here.
            if new == old:
                continue
            if new is None or old is None:
                changed.append(name)
                continue
            try:
                if not _same_typed(new, old):
                    changed.append(name)
                continue
            except _MalformedError:
                pass
            # Malformed on one side: decoding names it (DecodeError); if both decode after all, compare the values.
            if values_differ(_value(new, f"{self.name}.{name}"), _value(old, f"{other.name}.{name}")):
                changed.append(name)
        changed.sort()
        return tuple(changed)

    def _slowly(self) -> Item:
        # Again, the slow way, which names the path of the first bad value in its error. (What the fast decoders
        # refuse, this one refuses too; if it ever did not, the plain values are written through the encoder's
        # fallbacks, so no record is lost to a difference between them.)
        return {attribute: _value(typed, f"{self.name}.{attribute}") for attribute, typed in self.typed.items()}


class _MalformedError(Exception):
    """Raised by the fast decoders, which do not track where they are: the caller decodes again for the path."""


def _fast_string(raw: Any) -> str:
    if type(raw) is not str:
        raise _MalformedError
    return raw


def _fast_number(raw: Any) -> Decimal:
    if type(raw) is not str:
        raise _MalformedError
    try:
        number = Decimal(raw)
    except InvalidOperation:
        raise _MalformedError from None
    if not number.is_finite():
        raise _MalformedError
    return number


def _fast_binary(raw: Any) -> bytes:
    if type(raw) is not str:
        raise _MalformedError
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise _MalformedError from None


def _fast_bool(raw: Any) -> bool:
    if type(raw) is not bool:
        raise _MalformedError
    return raw


def _fast_null(raw: Any) -> None:
    if raw is not True:
        raise _MalformedError


def _fast_list(raw: Any) -> list[Any]:
    if type(raw) is not list:
        raise _MalformedError
    return raw


def _fast_map(raw: Any) -> dict[str, PlainValue]:
    if type(raw) is not dict:
        raise _MalformedError
    return {key: _plain(value) for key, value in raw.items()}


def _walker(number: Callable[[Any], Any], by_tag: dict[str, Callable[[Any], Any]]) -> Callable[[Any], Any]:
    """A fast walk over one DynamoDB-JSON value: strings and numbers first, without a table lookup (this runs once
    per attribute), every other type through `by_tag`. Raises _MalformedError; it tracks no path."""

    def walk(typed: Any) -> Any:
        if type(typed) is not dict or len(typed) != 1:
            raise _MalformedError
        raw = typed.get("S")
        if raw is not None:
            if type(raw) is not str:
                raise _MalformedError
            return raw
        raw = typed.get("N")
        if raw is not None:
            return number(raw)
        ((tag, raw),) = typed.items()
        convert = by_tag.get(tag)
        if convert is None:
            raise _MalformedError
        return convert(raw)

    return walk


_FAST: dict[str, Callable[[Any], PlainValue]] = {
    "S": _fast_string,
    "N": _fast_number,
    "B": _fast_binary,
    "BOOL": _fast_bool,
    "NULL": _fast_null,
    "SS": lambda raw: frozenset(_fast_string(s) for s in _fast_list(raw)),
    "NS": lambda raw: frozenset(_fast_number(n) for n in _fast_list(raw)),
    "BS": lambda raw: frozenset(_fast_binary(b) for b in _fast_list(raw)),
    "L": lambda raw: [_plain(value) for value in _fast_list(raw)],
    "M": _fast_map,
}
# _value without the bookkeeping of a path, for the common case of a valid image.
_plain: Callable[[Any], PlainValue] = _walker(_fast_number, _FAST)


def _ready_number(raw: Any) -> orjson.Fragment:
    return orjson.Fragment(str(_fast_number(raw)))


def _ready_map(raw: Any) -> dict[str, Any]:
    if type(raw) is not dict:
        raise _MalformedError
    return {key: _ready(value) for key, value in raw.items()}


# A value as orjson should write it in the plain format, checked as _plain checks it: numbers as JSON fragments of
# their exact digits, string and number sets as sorted lists, bytes left to the encoder (base64 again). The plain
# format never needs the Python values themselves.
_ready: Callable[[Any], Any] = _walker(
    _ready_number,
    {
        **_FAST,
        "N": _ready_number,
        "M": _ready_map,
        "L": lambda raw: [_ready(value) for value in _fast_list(raw)],
        "SS": lambda raw: sorted({_fast_string(s) for s in _fast_list(raw)}),
        "NS": lambda raw: [orjson.Fragment(str(n)) for n in sorted({_fast_number(n) for n in _fast_list(raw)})],
    },
)


def _same_typed(one: Any, other: Any) -> bool:
    """Equal values, compared in DynamoDB JSON without decoding them: what values_differ says of the decoded ones."""
    if type(one) is not dict or type(other) is not dict or len(one) != 1 or len(other) != 1:
        raise _MalformedError
    ((tag, mine),) = one.items()
    theirs = other.get(tag, _ABSENT)
    if theirs is _ABSENT:
        return False  # another type
    if tag in _ONE_SPELLING:
        return bool(mine == theirs)
    same = _SAME.get(tag)
    if same is None:
        raise _MalformedError
    return same(mine, theirs)


def _same_map(mine: Any, theirs: Any) -> bool:
    if type(mine) is not dict or type(theirs) is not dict:
        raise _MalformedError
    return mine.keys() == theirs.keys() and all(_same_typed(mine[key], theirs[key]) for key in mine)


def _same_list(mine: Any, theirs: Any) -> bool:
    mine, theirs = _fast_list(mine), _fast_list(theirs)
    return len(mine) == len(theirs) and all(_same_typed(a, b) for a, b in zip(mine, theirs, strict=True))


def _same_by(decode: Callable[[Any], Any]) -> Callable[[Any, Any], bool]:
    return lambda mine, theirs: bool(decode(mine) == decode(theirs))


_ABSENT = object()
# Strings and booleans have one spelling per value, so their JSON compares as they do: most changed attributes.
_ONE_SPELLING = frozenset({"S", "BOOL"})
# Numbers ("1.0" is "1"), bytes (padding) and sets (any order) are compared as values.
_SAME: dict[str, Callable[[Any, Any], bool]] = {
    **{tag: _same_by(decode) for tag, decode in _FAST.items()},
    "L": _same_list,
    "M": _same_map,
}


def decode_value(typed: Any) -> PlainValue:
    """One DynamoDB-JSON attribute value, e.g. {"N": "25.99"}, to its plain Python value."""
    return _value(typed, "value")


def _value(typed: Any, path: str) -> PlainValue:  # noqa: C901, PLR0911, PLR0912 - one branch per DynamoDB type
    if not isinstance(typed, dict) or len(typed) != 1:
        raise DecodeError(f"{path}: expected one DynamoDB type descriptor, got {typed!r}")
    ((tag, raw),) = typed.items()
    match tag:
        case "S":
            return _expect(raw, str, path)
        case "N":
            return _number(raw, path)
        case "B":
            return _binary(raw, path)
        case "BOOL":
            return _expect(raw, bool, path)
        case "NULL":
            if raw is not True:
                raise DecodeError(f"{path}: NULL must be true")
            return None
        case "SS":
            return frozenset(_expect(s, str, path) for s in _expect(raw, list, path))
        case "NS":
            return frozenset(_number(n, path) for n in _expect(raw, list, path))
        case "BS":
            return frozenset(_binary(b, path) for b in _expect(raw, list, path))
        case "L":
            return [_value(v, f"{path}[{i}]") for i, v in enumerate(_expect(raw, list, path))]
        case "M":
            return {k: _value(v, f"{path}.{k}") for k, v in _expect(raw, dict, path).items()}
        case _:
            raise DecodeError(f"{path}: unknown DynamoDB type {tag!r}")


def _expect(raw: Any, kind: type, path: str) -> Any:
    if not isinstance(raw, kind):
        raise DecodeError(f"{path}: expected {kind.__name__}, got {type(raw).__name__}")
    return raw


def _number(raw: Any, path: str) -> Decimal:
    # Decimal(str) keeps every digit (DynamoDB allows 38); floats would round.
    try:
        number = Decimal(_expect(raw, str, path))
    except InvalidOperation as error:
        raise DecodeError(f"{path}: not a number: {raw!r}") from error
    if not number.is_finite():
        raise DecodeError(f"{path}: not a finite number: {raw!r}")
    return number


def _binary(raw: Any, path: str) -> bytes:
    try:
        return base64.b64decode(_expect(raw, str, path), validate=True)
    except (binascii.Error, ValueError) as error:
        raise DecodeError(f"{path}: invalid base64: {error}") from error


def encode_value(value: PlainValue) -> dict[str, Any]:  # noqa: PLR0911 - one branch per DynamoDB type
    """The inverse of decode_value: a plain value to DynamoDB JSON."""
    match value:
        case None:
            return {"NULL": True}
        case bool():
            return {"BOOL": value}
        case str():
            return {"S": value}
        case Decimal() | int():
            return {"N": str(value)}
        case bytes():
            return {"B": base64.b64encode(value).decode("ascii")}
        case list():
            return {"L": [encode_value(v) for v in value]}
        case dict():
            return {"M": {k: encode_value(v) for k, v in value.items()}}
        case frozenset() | set():
            return _encode_set(value)
    raise TypeError(f"cannot encode {type(value).__name__} as a DynamoDB value")


def _encode_set(values: frozenset[Any] | set[Any]) -> dict[str, Any]:
    if not values:
        raise TypeError("DynamoDB has no empty sets")
    sample = next(iter(values))
    if isinstance(sample, str):
        return {"SS": sorted(values)}
    if isinstance(sample, bytes):
        return {"BS": [base64.b64encode(v).decode("ascii") for v in sorted(values)]}
    return {"NS": [str(v) for v in sorted(values)]}
