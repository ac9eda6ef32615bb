"""What a stream record means, independent of how it arrived: frozen values, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

# An unmarshalled DynamoDB value: S -> str, N -> Decimal (exact), B -> bytes, BOOL -> bool, NULL -> None,
# SS/NS/BS -> frozenset, L -> list, M -> dict. Kept as Any: the recursion is not expressible without
# making every consumer cast.
PlainValue = Any
Item = Mapping[str, PlainValue]

TTL_PRINCIPAL = "dynamodb.amazonaws.com"


class EventName(StrEnum):
    INSERT = "INSERT"
    MODIFY = "MODIFY"
    REMOVE = "REMOVE"


@dataclass(frozen=True, slots=True)
class UserIdentity:
    principal_id: str
    type: str


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One item-level change, decoded with exact numbers and real bytes.

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
    new_image: Item | None
    old_image: Item | None
    stream_view_type: str | None
    user_identity: UserIdentity | None
    record: Mapping[str, Any]

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
        if self.old_image is None or self.new_image is None:
            return ()
        names = self.old_image.keys() | self.new_image.keys()
        old, new = self.old_image, self.new_image
        return tuple(sorted(n for n in names if _differs(old.get(n, _MISSING), new.get(n, _MISSING))))


_MISSING = object()


def _differs(old: PlainValue, new: PlainValue) -> bool:
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
