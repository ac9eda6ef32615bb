"""Lambda event filtering (the EventBridge pattern language) applied to stream records, as Lambda applies it.

Users paste the FilterCriteria of their event source mapping, so the same pattern must keep and drop the same
records here. A pattern is compiled once into a small tree of matcher objects; `EventFilter.matches` then only
walks that tree, and never raises whatever the record looks like.

Semantics followed (EventBridge's "array-consistent" matching, which Lambda uses):
- An object pattern matches when every key matches (AND); keys the pattern does not name are ignored.
- A leaf array matches when any condition matches (OR); an array in the record matches when any element does.
- A nested object pattern descends; through an array of objects it needs one element to match all its keys.
- `exists` and the other leaf conditions only see leaf values: an object where a leaf is expected counts as
  absent, as does an empty array.
- Numbers compare as Decimal, and numeric strings (DynamoDB's "N") count as numbers, so 25.99 matches "25.99".
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

# A JSON-style number (DynamoDB writes "N" values this way); Decimal() alone would also accept "NaN", "1_0", " 5".
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# Longer numeric strings are not numbers a pattern could mean, and parsing them would cost on the hot path.
_MAX_NUMBER_TEXT = 400
_LOWER_BOUNDS = frozenset({">", ">="})
_UPPER_BOUNDS = frozenset({"<", "<="})
_MISSING: Any = object()
_EMPTY: Mapping[str, Any] = {}
_ARRAYS = (list, tuple, set, frozenset)


class FilterPatternError(ValueError):
    """A filter pattern Lambda would reject; the message starts with where in the pattern the problem is."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


# --- matching -------------------------------------------------------------------------------------------------


class _Node(Protocol):
    def match(self, value: Any) -> bool: ...


class _Condition(Protocol):
    # `number` is the value already converted by _as_number (None if not numeric), computed once per value.
    def match(self, value: Any, number: Decimal | None, /) -> bool: ...


def _as_number(value: Any) -> Decimal | None:  # noqa: PLR0911 - one branch per Python number type
    """The value as an exact finite Decimal if it is a number or a numeric string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, float):
        # repr is the shortest text that round-trips, so 25.99 stays 25.99 instead of its binary expansion.
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= _MAX_NUMBER_TEXT and _NUMBER_TEXT.fullmatch(value):
        try:
            number = Decimal(value)
        except (InvalidOperation, ValueError):
            return None
        return number if number.is_finite() else None
    return None


def _leaf_values(value: Any) -> Iterator[Any]:
    """The leaf values at one position: nested arrays flatten, objects are not leaves."""
    if isinstance(value, _ARRAYS):
        for element in value:
            yield from _leaf_values(element)
    elif value is not _MISSING and not isinstance(value, Mapping):
        yield value


def _objects(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        yield value
    elif isinstance(value, _ARRAYS):
        for element in value:
            yield from _objects(element)


@dataclass(frozen=True, slots=True)
class _Leaf:
    """One leaf array: literals in hashed sets for the common case, operator conditions in order."""

    strings: frozenset[str]
    numbers: frozenset[Decimal]
    match_true: bool
    match_false: bool
    match_null: bool
    exists_true: bool
    exists_false: bool
    conditions: tuple[_Condition, ...]
    wants_number: bool

    def match(self, value: Any) -> bool:
        if value is _MISSING or isinstance(value, Mapping):
            # Only leaves count: an object where a leaf is expected is as good as absent (Lambda's documented rule).
            return self.exists_false
        if not isinstance(value, _ARRAYS):
            return self.exists_true or self._match_one(value)
        present = False
        for leaf in _leaf_values(value):
            present = True
            if self.exists_true or self._match_one(leaf):
                return True
        # An empty array (or one holding only objects) has no value to match, like an absent field.
        return not present and self.exists_false

    def _match_one(self, value: Any) -> bool:
        if isinstance(value, str):
            if value in self.strings:
                return True
        elif value is None:
            if self.match_null:
                return True
        elif value is True:
            if self.match_true:
                return True
        elif value is False and self.match_false:
            return True
        number = _as_number(value) if self.wants_number else None
        if number is not None and number in self.numbers:
            return True
        return any(condition.match(value, number) for condition in self.conditions)


@dataclass(frozen=True, slots=True)
class _Object:
    fields: tuple[tuple[str, _Node], ...]
    alternatives: tuple[_Object, ...]

    def match(self, value: Any) -> bool:
        if isinstance(value, Mapping):
            return self.match_mapping(value)
        found = False
        for candidate in _objects(value):
            found = True
            if self.match_mapping(candidate):
                return True
        # Below a missing or scalar value every field is absent, which `exists: false` still matches.
        return not found and self.match_mapping(_EMPTY)

    def match_mapping(self, mapping: Mapping[str, Any]) -> bool:
        for key, node in self.fields:
            if not node.match(mapping.get(key, _MISSING)):
                return False
        return not self.alternatives or any(alternative.match_mapping(mapping) for alternative in self.alternatives)


@dataclass(frozen=True, slots=True)
class _Prefix:
    text: str
    ignore_case: bool

    def match(self, value: Any, _number: Decimal | None) -> bool:
        if not isinstance(value, str):
            return False
        return value.casefold().startswith(self.text) if self.ignore_case else value.startswith(self.text)


@dataclass(frozen=True, slots=True)
class _Suffix:
    text: str
    ignore_case: bool

    def match(self, value: Any, _number: Decimal | None) -> bool:
        if not isinstance(value, str):
            return False
        return value.casefold().endswith(self.text) if self.ignore_case else value.endswith(self.text)


@dataclass(frozen=True, slots=True)
class _EqualsIgnoreCase:
    folded: frozenset[str]

    def match(self, value: Any, _number: Decimal | None) -> bool:
        return isinstance(value, str) and value.casefold() in self.folded


@dataclass(frozen=True, slots=True)
class _Wildcard:
    regex: re.Pattern[str]

    def match(self, value: Any, _number: Decimal | None) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class _Numeric:
    equals: Decimal | None
    lower: Decimal | None
    lower_inclusive: bool
    upper: Decimal | None
    upper_inclusive: bool

    def match(self, _value: Any, number: Decimal | None) -> bool:
        if number is None:
            return False
        if self.equals is not None:
            return number == self.equals
        if self.lower is not None and (number < self.lower or (number == self.lower and not self.lower_inclusive)):
            return False
        return self.upper is None or number < self.upper or (number == self.upper and self.upper_inclusive)


@dataclass(frozen=True, slots=True)
class _Cidr:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    def match(self, value: Any, _number: Decimal | None) -> bool:
        if not isinstance(value, str):
            return False
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        return address.version == self.network.version and address in self.network


@dataclass(frozen=True, slots=True)
class _AnythingBut:
    """Matches a present value that none of the excluded values or conditions match."""

    strings: frozenset[str]
    numbers: frozenset[Decimal]
    conditions: tuple[_Condition, ...]

    def match(self, value: Any, number: Decimal | None) -> bool:
        if isinstance(value, str) and value in self.strings:
            return False
        if number is not None and number in self.numbers:
            return False
        return not any(condition.match(value, number) for condition in self.conditions)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Compiled patterns, OR'd; no patterns at all lets every record through."""

    patterns: tuple[_Object, ...]

    def matches(self, record: Mapping[str, Any]) -> bool:
        if not self.patterns:
            return True
        # No exception is caught here: records are decoded data, so an exception is a bug, and treating it as "no
        # match" would drop the event silently. It fails the batch instead, which is re-read after a restart.
        return any(pattern.match(record) for pattern in self.patterns)


# --- compiling ------------------------------------------------------------------------------------------------


def compile_patterns(patterns: Sequence[Mapping[str, Any] | str], *, where: str = "patterns") -> EventFilter:
    """Several patterns, OR'd. Each item is a pattern object or its JSON text. An empty sequence matches everything."""
    if isinstance(patterns, (str, bytes)) or not isinstance(patterns, Sequence):
        raise FilterPatternError(where, f"expected a list of patterns, got {_kind(patterns)}")
    return EventFilter(
        patterns=tuple(_compile_pattern(pattern, _index(where, i)) for i, pattern in enumerate(patterns))
    )


def parse_filter_criteria(value: Any, *, where: str = "filter_criteria") -> EventFilter:
    """Accepts a Lambda FilterCriteria as pasted from `aws lambda get-event-source-mapping`: a dict
    {"Filters": [{"Pattern": "<json>"}, ...]} or its JSON text; or a bare list of patterns (objects or JSON text)."""
    if isinstance(value, str):
        value = _parse_json(value, where)
    if isinstance(value, list):
        return compile_patterns(value, where=where)
    if not isinstance(value, Mapping):
        raise FilterPatternError(where, f'expected {{"Filters": [{{"Pattern": ...}}]}} or a list, got {_kind(value)}')
    if set(value) == {"FilterCriteria"}:
        # The whole `get-event-source-mapping` field pasted, wrapper included.
        where = _key(where, "FilterCriteria")
        value = value["FilterCriteria"]
        if not isinstance(value, Mapping):
            raise FilterPatternError(where, f"expected an object, got {_kind(value)}")
    unknown = sorted(set(value) - {"Filters"})
    if unknown:
        raise FilterPatternError(where, f"unknown key(s) {', '.join(map(repr, unknown))}; expected only 'Filters'")
    filters = value.get("Filters", [])
    filters_where = _key(where, "Filters")
    if not isinstance(filters, list):
        raise FilterPatternError(filters_where, f"expected a list, got {_kind(filters)}")
    compiled = []
    for i, item in enumerate(filters):
        item_where = _index(filters_where, i)
        if not isinstance(item, Mapping) or set(item) != {"Pattern"}:
            raise FilterPatternError(item_where, 'expected {"Pattern": "<JSON pattern>"}')
        compiled.append(_compile_pattern(item["Pattern"], _key(item_where, "Pattern")))
    return EventFilter(patterns=tuple(compiled))


def _compile_pattern(pattern: Any, path: str) -> _Object:
    if isinstance(pattern, str):
        pattern = _parse_json(pattern, path)
    return _compile_object(pattern, path)


def _parse_json(text: str, path: str) -> Any:
    try:
        # Decimal keeps pattern numbers exact, like the record's 38-digit "N" strings.
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as error:  # JSONDecodeError, or NaN/Infinity refused below
        raise FilterPatternError(path, f"not valid JSON: {error}") from error


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _compile_object(pattern: Any, path: str) -> _Object:
    if not isinstance(pattern, Mapping):
        raise FilterPatternError(path, f"a pattern must be a JSON object, got {_kind(pattern)}")
    if not pattern:
        raise FilterPatternError(path, "empty object: name at least one field to match")
    fields: list[tuple[str, _Node]] = []
    alternatives: tuple[_Object, ...] = ()
    for key, value in pattern.items():
        if not isinstance(key, str):
            raise FilterPatternError(path, f"field names must be strings, got {key!r}")
        child = _key(path, key)
        if key == "$or":
            alternatives = _compile_or(value, child)
        elif isinstance(value, Mapping):
            fields.append((key, _compile_object(value, child)))
        elif isinstance(value, list):
            fields.append((key, _compile_leaf(value, child)))
        else:
            raise FilterPatternError(
                child, f"expected an array of match conditions or a nested object, got {_kind(value)}"
            )
    return _Object(fields=tuple(fields), alternatives=alternatives)


def _compile_or(value: Any, path: str) -> tuple[_Object, ...]:
    if not isinstance(value, list) or len(value) < 2:  # noqa: PLR2004 - one alternative is not an OR
        raise FilterPatternError(path, "$or must be an array of at least two pattern objects")
    return tuple(_compile_object(alternative, _index(path, i)) for i, alternative in enumerate(value))


def _compile_leaf(values: list[Any], path: str) -> _Leaf:
    if not values:
        raise FilterPatternError(path, "empty array: give at least one match condition")
    strings: set[str] = set()
    numbers: set[Decimal] = set()
    singletons: set[bool | None] = set()
    exists: set[bool] = set()
    conditions: list[_Condition] = []
    for i, value in enumerate(values):
        where = _index(path, i)
        if value is None or isinstance(value, bool):
            singletons.add(value)
        elif isinstance(value, str):
            strings.add(value)
        elif (number := _pattern_number(value)) is not None:
            numbers.add(number)
        elif isinstance(value, Mapping):
            if (flag := _compile_operator(value, where, conditions)) is not None:
                exists.add(flag)
        else:
            raise FilterPatternError(
                where, f"expected a string, number, true, false, null or an operator object, got {_kind(value)}"
            )
    return _Leaf(
        strings=frozenset(strings),
        numbers=frozenset(numbers),
        match_true=True in singletons,
        match_false=False in singletons,
        match_null=None in singletons,
        exists_true=True in exists,
        exists_false=False in exists,
        conditions=tuple(conditions),
        wants_number=bool(numbers) or any(isinstance(c, (_Numeric, _AnythingBut)) for c in conditions),
    )


def _compile_operator(operator: Mapping[str, Any], path: str, conditions: list[_Condition]) -> bool | None:
    """Append the operator's condition; an `exists` operator returns its boolean instead."""
    if len(operator) != 1:
        names = ", ".join(map(repr, operator)) or "none"
        raise FilterPatternError(path, f"an operator object holds exactly one operator, got {names}")
    ((name, operand),) = operator.items()
    where = _key(path, str(name))
    match name:
        case "exists":
            if not isinstance(operand, bool):
                raise FilterPatternError(where, f"exists takes true or false, got {_kind(operand)}")
            return operand
        case "prefix" | "suffix":
            conditions.append(_compile_affix(name, operand, where))
        case "equals-ignore-case":
            conditions.append(_EqualsIgnoreCase(frozenset({_string(operand, where, name).casefold()})))
        case "wildcard":
            conditions.append(_Wildcard(_wildcard_regex(_string(operand, where, name), where)))
        case "numeric":
            conditions.append(_compile_numeric(operand, where))
        case "cidr":
            conditions.append(_compile_cidr(operand, where))
        case "anything-but":
            conditions.append(_compile_anything_but(operand, where))
        case _:
            raise FilterPatternError(path, f"unknown operator {name!r}")
    return None


def _compile_affix(name: str, operand: Any, path: str) -> _Condition:
    kind = _Prefix if name == "prefix" else _Suffix
    # EventBridge also takes {"prefix": {"equals-ignore-case": "x"}}.
    if isinstance(operand, Mapping) and set(operand) == {"equals-ignore-case"}:
        text = _string(operand["equals-ignore-case"], _key(path, "equals-ignore-case"), "equals-ignore-case")
        return kind(text.casefold(), ignore_case=True)
    return kind(_string(operand, path, name), ignore_case=False)


def _compile_numeric(operand: Any, path: str) -> _Numeric:
    if not isinstance(operand, list) or len(operand) not in {2, 4}:
        raise FilterPatternError(
            path, 'numeric takes one or two comparisons, e.g. ["=", 5] or [">", 0, "<=", 5]; got ' + _short(operand)
        )
    equals = lower = upper = None
    lower_inclusive = upper_inclusive = False
    for i in range(0, len(operand), 2):
        operator, raw = operand[i], operand[i + 1]
        number = _pattern_number(raw)
        if number is None:
            raise FilterPatternError(_index(path, i + 1), f"numeric operand must be a number, got {_kind(raw)}")
        if operator == "=" and len(operand) == 2:  # noqa: PLR2004 - the single-comparison form
            equals = number
        elif operator in _LOWER_BOUNDS and lower is None:
            lower, lower_inclusive = number, operator == ">="
        elif operator in _UPPER_BOUNDS and upper is None:
            upper, upper_inclusive = number, operator == "<="
        elif operator in {"=", *_LOWER_BOUNDS, *_UPPER_BOUNDS}:
            raise FilterPatternError(
                _index(path, i), "two comparisons must be a range: one of > or >=, and one of < or <="
            )
        else:
            raise FilterPatternError(
                _index(path, i), f"unknown numeric operator {_short(operator)}; use =, <, <=, > or >="
            )
    if lower is not None and upper is not None and lower > upper:
        raise FilterPatternError(path, f"numeric range is empty: lower bound {lower} is above upper bound {upper}")
    return _Numeric(equals, lower, lower_inclusive, upper, upper_inclusive)


def _compile_cidr(operand: Any, path: str) -> _Cidr:
    text = _string(operand, path, "cidr")
    try:
        return _Cidr(ipaddress.ip_network(text, strict=False))
    except ValueError as error:
        raise FilterPatternError(path, f"not an IP address range: {error}") from error


def _compile_anything_but(operand: Any, path: str) -> _AnythingBut:
    if isinstance(operand, Mapping):
        return _AnythingBut(frozenset(), frozenset(), _compile_anything_but_operator(operand, path))
    strings: set[str] = set()
    numbers: set[Decimal] = set()
    for where, item in _one_or_many(operand, path):
        if isinstance(item, str):
            strings.add(item)
        elif (number := _pattern_number(item)) is not None:
            numbers.add(number)
        else:
            raise FilterPatternError(where, f"anything-but takes strings or numbers, got {_kind(item)}")
    return _AnythingBut(frozenset(strings), frozenset(numbers), ())


def _compile_anything_but_operator(operand: Mapping[str, Any], path: str) -> tuple[_Condition, ...]:
    if len(operand) != 1:
        raise FilterPatternError(path, "anything-but takes one of prefix, suffix, equals-ignore-case or wildcard")
    ((name, inner),) = operand.items()
    where = _key(path, str(name))
    match name:
        case "prefix" | "suffix":
            return (_compile_affix(name, inner, where),)
        case "equals-ignore-case":
            texts = (_string(text, at, name).casefold() for at, text in _one_or_many(inner, where))
            return (_EqualsIgnoreCase(frozenset(texts)),)
        case "wildcard":
            return tuple(
                _Wildcard(_wildcard_regex(_string(text, at, name), at)) for at, text in _one_or_many(inner, where)
            )
    raise FilterPatternError(path, f"unknown operator {name!r} inside anything-but")


def _one_or_many(operand: Any, path: str) -> list[tuple[str, Any]]:
    """An operand given as one value or as a non-empty array, each with its own path."""
    if not isinstance(operand, list):
        return [(path, operand)]
    if not operand:
        raise FilterPatternError(path, "empty array: give at least one value")
    return [(_index(path, i), item) for i, item in enumerate(operand)]


def _wildcard_regex(text: str, path: str) -> re.Pattern[str]:
    parts: list[str] = []
    literal: list[str] = []
    escaped = previous_star = False
    for position, char in enumerate(text):
        if escaped:
            if char not in "*\\":
                raise FilterPatternError(path, f"invalid escape '\\{char}' at {position - 1}; only \\* and \\\\")
            literal.append(char)
            escaped = previous_star = False
        elif char == "\\":
            escaped = True
        elif char == "*":
            if previous_star:
                raise FilterPatternError(path, f"consecutive '*' at {position} in wildcard {text!r}")
            parts.append(re.escape("".join(literal)))
            literal = []
            parts.append(".*")
            previous_star = True
        else:
            literal.append(char)
            previous_star = False
    if escaped:
        raise FilterPatternError(path, f"wildcard {text!r} ends with a lone backslash")
    parts.append(re.escape("".join(literal)))
    return re.compile("".join(parts), re.DOTALL)


def _pattern_number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    return _as_number(value)


def _string(value: Any, path: str, operator: str) -> str:
    if not isinstance(value, str):
        raise FilterPatternError(path, f"{operator} takes a string, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:  # noqa: PLR0911 - one branch per JSON type
    match value:
        case None:
            return "null"
        case bool():
            return f"boolean {str(value).lower()}"
        case str():
            return f"string {_short(value)}"
        case int() | float() | Decimal():
            return f"number {value}"
        case Mapping():
            return "an object"
        case list() | tuple():
            return "an array"
    return type(value).__name__


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."  # noqa: PLR2004 - keep messages on one line


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _index(path: str, i: int) -> str:
    return f"{path}[{i}]"
