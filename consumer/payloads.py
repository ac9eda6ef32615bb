"""Events rendered for the outside world, and a JSON encoder that keeps DynamoDB numbers exact."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from consumer.events import ChangeEvent


def plain(event: ChangeEvent) -> dict[str, Any]:
    """Unmarshalled view of an event: what most notification consumers want."""
    payload: dict[str, Any] = {
        "eventID": event.event_id,
        "eventName": event.event_name.value,
        "table": event.table,
        "keys": event.keys,
        "new": event.new_image,
        "old": event.old_image,
        "changed": list(event.changed),
        "sequenceNumber": event.sequence_number,
        "approximateCreationDateTime": event.approximate_creation,
    }
    if event.user_identity is not None:
        payload["userIdentity"] = {
            "principalId": event.user_identity.principal_id,
            "type": event.user_identity.type,
        }
    return payload


def item_key(keys: Mapping[str, Any]) -> str:
    """The canonical text of an item key: its JSON with the attributes sorted by name (same key, same text)."""
    return dumps(dict(sorted(keys.items())))


def dumps(value: Any) -> str:
    """JSON text with Decimals written as JSON numbers digit for digit (never through float).

    bytes become base64 strings, sets sorted arrays, datetimes ISO-8601.
    """
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: Any, out: list[str]) -> None:
    if value is None or isinstance(value, bool | int | str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, Decimal):
        out.append(_number(value))
    elif isinstance(value, Mapping):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(",")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        out.append("[")
        for index, item in enumerate(items):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif isinstance(value, bytes):
        out.append(json.dumps(base64.b64encode(value).decode("ascii")))
    elif isinstance(value, datetime):
        out.append(json.dumps(value.isoformat(timespec="milliseconds").replace("+00:00", "Z")))
    elif isinstance(value, float):
        out.append(json.dumps(value))
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _number(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"JSON has no {value}")
    # 'E' notation is valid JSON; str() keeps every significant digit.
    return str(value)
