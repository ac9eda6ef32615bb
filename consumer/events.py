"""What a stream record means, independent of how it arrived, and which stream it came from: frozen values, no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

# An unmarshalled DynamoDB value: S -> str, N -> Decimal (exact), B -> bytes, BOOL -> bool, NULL -> None,
# SS/NS/BS -> frozenset, L -> list, M -> dict. Kept as Any: the recursion is not expressible without
# making every consumer cast.
PlainValue = Any
Item = Mapping[str, PlainValue]

TTL_PRINCIPAL = "dynamodb.amazonaws.com"

STREAM_ARN_PATTERN = re.compile(
    r"^arn:(?P<partition>aws[a-zA-Z-]*):dynamodb:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"table/(?P<table>[A-Za-z0-9_.-]{3,255})/stream/(?P<label>[0-9A-Za-z:._-]+)$"
)


class EventName(StrEnum):
    INSERT = "INSERT"
    MODIFY = "MODIFY"
    REMOVE = "REMOVE"


@dataclass(frozen=True, slots=True)
class UserIdentity:
    principal_id: str
    type: str


class Image(Protocol):
    """One item image three ways: as the stream sent it (DynamoDB JSON), ready to be written as JSON (exact
    numbers, sets as sorted lists) and as plain Python values.

    The last two are made on first use, and a malformed value is found then (a DecodeError): most routes never
    need them (the `lambda` format passes the record through as Lambda does), and decoding every attribute was
    the largest cost of a record.
    """

    @property
    def name(self) -> str:
        """Where the image sits in the record (NewImage, OldImage, Keys): errors name values by this path."""
        ...

    @property
    def typed(self) -> Mapping[str, Any]: ...

    @property
    def json(self) -> Mapping[str, Any]: ...

    @property
    def values(self) -> Item: ...

    def changed_from(self, other: Image) -> tuple[str, ...]:
        """The names of the attributes whose value differs in `other` (absent on one side counts), sorted."""
        ...


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One item-level change. Its images decode to exact numbers and real bytes (on first use).

    `record` keeps the stream record exactly as the adapter sent it (DynamoDB JSON), so the Lambda shape can be
    rebuilt without a lossy round trip.
    """

    event_id: str
    event_name: EventName
    table: str
    sequence_number: str
    approximate_creation: datetime
    size_bytes: int
    keys: Item
    new: Image | None
    old: Image | None
    stream_view_type: str | None
    user_identity: UserIdentity | None
    record: Mapping[str, Any]
    _changed: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def new_image(self) -> Item | None:
        return None if self.new is None else self.new.values

    @property
    def old_image(self) -> Item | None:
        return None if self.old is None else self.old.values

    @property
    def image(self) -> Item:
        """The state this event leaves behind, or for a REMOVE the state it removed."""
        return self.new_image or self.old_image or self.keys

    @property
    def is_ttl_delete(self) -> bool:
        return (
            self.event_name is EventName.REMOVE
            and self.user_identity is not None
            and self.user_identity.principal_id == TTL_PRINCIPAL
            and self.user_identity.type == "Service"
        )

    @property
    def changed(self) -> tuple[str, ...]:
        """Attribute names whose value differs between the old and the new image, sorted.

        Empty unless both images are present (a MODIFY with the NEW_AND_OLD_IMAGES view type).
        """
        changed = self._changed
        if changed is None:
            # Kept: a filter, the renderer and a log sink may each ask. (The dataclass is frozen, so this one
            # lazily computed slot is set the way the dataclass itself sets fields.)
            changed = () if self.old is None or self.new is None else self.new.changed_from(self.old)
            object.__setattr__(self, "_changed", changed)
        return changed


# An attribute absent from an image (None is the NULL value).
MISSING = object()


def values_differ(old: PlainValue, new: PlainValue) -> bool:
    return not _same(old, new)


def _same(a: PlainValue, b: PlainValue) -> bool:
    # Python equates True with Decimal(1) and Decimal('1.0') with Decimal('1'); DynamoDB does not treat a
    # BOOL and an N as the same value, so types are compared at every level.
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@dataclass(frozen=True, slots=True)
class StreamContext:
    """What the records do not say about themselves but Lambda's record shape needs."""

    stream_arn: str
    region: str
    # The source's endpoint override (a local endpoint); AWS sinks default to it, like to the region.
    endpoint_url: str | None = None
    table: str = field(init=False)

    def __post_init__(self) -> None:
        # Once: every record's event names its table.
        object.__setattr__(self, "table", table_of(self.stream_arn))


def table_of(stream_arn: str) -> str:
    match = STREAM_ARN_PATTERN.match(stream_arn)
    if match is None:
        raise ValueError(f"not a DynamoDB stream ARN: {stream_arn!r}")
    return match.group("table")
