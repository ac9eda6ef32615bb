"""JSON text that keeps DynamoDB numbers exact: the one encoder of every payload, log line and dead letter."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson


def timestamp(moment: datetime) -> str:
    """ISO-8601 with milliseconds and Z, as every payload writes a time."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def item_key(keys: Mapping[str, Any]) -> str:
    """The canonical text of an item key: its JSON with the attributes sorted by name (same key, same text)."""
    return dumps(dict(sorted(keys.items())))


def dumps(value: Any) -> str:
    """JSON text with Decimals written as JSON numbers digit for digit (never through float).

    bytes become base64 strings, sets sorted arrays, datetimes ISO-8601 with milliseconds and Z. Compact, and
    non-ASCII characters are written as themselves.
    """
    return orjson.dumps(value, default=_default, option=_OPTIONS).decode("utf-8")


# Datetimes pass through to _default, to keep the millisecond "Z" form; keys that are not strings are written as
# their text, as the JSON module would.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"JSON has no {value}")
        # A fragment is written as it is: 'E' notation is valid JSON, and str() keeps every significant digit.
        return orjson.Fragment(str(value))
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
