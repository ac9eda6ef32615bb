"""Lambda event filtering (the EventBridge pattern language) applied to stream records, as Lambda applies it.

Users paste the FilterCriteria of their event source mapping, so the same pattern must keep and drop the same
records here, and refuse the same patterns. The reference is AWS's own matcher, event-ruler (its array-consistent
`Machine.rulesForJSONEvent`); tests/ruler judges thousands of generated (pattern, record) pairs with it, and this
module must agree on every one. A pattern compiles once; `EventFilter.matches` never raises on a record.

Semantics followed (event-ruler 1.8.1, which the differential test pins):
- A pattern is flattened like the event: nested keys join with dots, so {"a.b": [...]} and {"a": {"b": [...]}}
  name the same field, in the pattern and in the record. `$or` expands into alternative sub-patterns.
- A sub-pattern matches when every field has a leaf value that one of its conditions accepts, with the values
  drawn from the same element of every array they share (array consistency). Fields are tried in sorted order,
  and `exists: false` asks whether the field is absent given the array elements chosen so far: an event-ruler
  quirk that makes the answer depend on field names, kept because Lambda has it.
- Leaves are strings, numbers, true, false and null; objects and empty arrays are not values (absent).
- Strings and numbers never meet: a numeric condition or a number literal matches JSON numbers only, and a string
  condition strings only. DynamoDB's "N" values are strings in the Lambda record, so `numeric` and number
  literals never match them (AWS: numeric filtering "doesn't apply"), exactly as in Lambda.
- Numbers compare as IEEE doubles; a number in a numeric condition must be exactly representable as one.
- A string literal that is an IP address matches the same address in any spelling (event-ruler turns it into a
  one-address CIDR range).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from consumer.errors import FilterPatternError

# event-ruler measures wildcard complexity but leaves the limit to its caller, and AWS does not publish its own.
# EventBridge refuses `*:*:*:*:*:event-bus/*` as "too complex" (complexity 11 by event-ruler's measure); 10 is the
# limit assumed here, the largest that agrees with that refusal.
WILDCARD_COMPLEXITY_LIMIT = 10
# What event-ruler takes for an IP address literal before it asks the JVM to parse one.
_IPV4_TEXT = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_IPV6_TEXT = re.compile(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*")
_MASK_TEXT = re.compile(r"[+-]?[0-9]+")
_ARRAYS = (list, tuple, set, frozenset)
# Operator names event-ruler reserves: inside `$or` they cannot be field names.
_RESERVED_IN_OR = frozenset(
    {
        "exactly",
        "equals-ignore-case",
        "prefix",
        "suffix",
        "anything-but",
        "exists",
        "wildcard",
        "numeric",
        "cidr",
        "=",
        "<",
        "<=",
        ">",
        ">=",
    }
)


# --- values ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Number:
    """A JSON number as event-ruler sees it: its text, and its double when the double is exactly that number."""

    text: str
    double: float | None


def _number(value: Any) -> _Number | None:
    """The number a leaf value is, or None for strings, booleans and null."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _Number(str(value), _exact_double(Decimal(value)))
    if isinstance(value, float):
        return _Number(repr(value), value if math.isfinite(value) else None)
    if isinstance(value, Decimal):
        return _Number(str(value), _exact_double(value))
    return None


def _exact_double(number: Decimal) -> float | None:
    # event-ruler compares numbers as doubles and refuses (in a pattern) or compares as text (in an event) a number
    # the double would round: 12345678901234567890 is not 12345678901234567000.
    if not number.is_finite():
        return None
    try:
        double = float(number)
    except (OverflowError, InvalidOperation):
        return None
    if not math.isfinite(double) or Decimal(repr(double)) != number:
        return None
    return double


def _ip(text: str) -> tuple[int, int] | None:
    """(version, address) if event-ruler reads the string as an IP address (IPv4-mapped IPv6 counts as IPv4)."""
    if _IPV4_TEXT.fullmatch(text):
        parts = [int(part) for part in text.split(".")]
        if any(part > 255 for part in parts):  # noqa: PLR2004 - one octet
            return None
        return 4, (parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]
    if _IPV6_TEXT.fullmatch(text):
        try:
            address = ipaddress.IPv6Address(text)
        except ValueError:
            return None
        mapped = address.ipv4_mapped
        return (4, int(mapped)) if mapped is not None else (6, int(address))
    return None


def _leaf_value(value: Any) -> Any:
    # Binary in a plain image is bytes; in JSON (what a pattern author sees) it is base64 text.
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


# --- conditions -----------------------------------------------------------------------------------------------


class _Condition(Protocol):
    def match(self, value: Any, number: _Number | None, /) -> bool: ...


def _case_regex(text: str) -> str:
    # event-ruler matches each character of the pattern as its lower- or its upper-case form (Locale.ROOT), so
    # "ß" matches "SS" (its upper case) but "ss" does not.
    parts = []
    for char in text:
        lower, upper = char.lower(), char.upper()
        parts.append(re.escape(lower) if lower == upper else f"(?:{re.escape(lower)}|{re.escape(upper)})")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class _Prefix:
    text: str

    def match(self, value: Any, _number: _Number | None) -> bool:
        return isinstance(value, str) and value.startswith(self.text)


@dataclass(frozen=True, slots=True)
class _Suffix:
    text: str

    def match(self, value: Any, _number: _Number | None) -> bool:
        return isinstance(value, str) and value.endswith(self.text)


@dataclass(frozen=True, slots=True)
class _Regex:
    """equals-ignore-case, prefix/suffix with equals-ignore-case, wildcard: a compiled regex over the whole string."""

    regex: re.Pattern[str]
    anchored_end: bool
    wildcard: str | None = None  # the wildcard text, which the complexity check reads

    def match(self, value: Any, _number: _Number | None) -> bool:
        if not isinstance(value, str):
            return False
        if self.anchored_end:
            return self.regex.search(value) is not None
        return self.regex.match(value) is not None


@dataclass(frozen=True, slots=True)
class _Numeric:
    lower: float
    lower_open: bool
    upper: float
    upper_open: bool

    def match(self, _value: Any, number: _Number | None) -> bool:
        if number is None or number.double is None:
            return False
        double = number.double
        above = double > self.lower if self.lower_open else double >= self.lower
        below = double < self.upper if self.upper_open else double <= self.upper
        return above and below


@dataclass(frozen=True, slots=True)
class _Cidr:
    version: int
    low: int
    high: int

    def match(self, value: Any, _number: _Number | None) -> bool:
        if not isinstance(value, str):
            return False
        address = _ip(value)
        return address is not None and address[0] == self.version and self.low <= address[1] <= self.high


@dataclass(frozen=True, slots=True)
class _AnythingBut:
    """Any present value that none of the excluded values or conditions matches (numbers, true and null too)."""

    strings: frozenset[str]
    doubles: frozenset[float]
    conditions: tuple[_Condition, ...]
    wildcard_texts: tuple[str, ...] = ()  # for the complexity check: one pattern however many wildcards

    def match(self, value: Any, number: _Number | None) -> bool:
        if isinstance(value, str) and value in self.strings:
            return False
        if number is not None and number.double is not None and number.double in self.doubles:
            return False
        return not any(condition.match(value, number) for condition in self.conditions)


@dataclass(frozen=True, slots=True)
class _Leaf:
    """The OR'd conditions on one field."""

    strings: frozenset[str]
    ips: frozenset[tuple[int, int]]
    doubles: frozenset[float]
    number_texts: frozenset[str]
    literals: frozenset[str]  # "true", "false", "null"
    exists_true: bool
    exists_false: bool
    conditions: tuple[_Condition, ...]

    def match(self, value: Any) -> bool:  # noqa: PLR0911 - one branch per JSON type
        if self.exists_true:
            return True
        if isinstance(value, str):
            if value in self.strings:
                return True
            if self.ips and (address := _ip(value)) is not None and address in self.ips:
                return True
            number = None
        elif value is None or isinstance(value, bool):
            if ("null" if value is None else "true" if value else "false") in self.literals:
                return True
            number = None
        else:
            number = _number(value)
            if number is not None:
                if number.double is not None:
                    if number.double in self.doubles:
                        return True
                elif number.text in self.number_texts:
                    return True
        return any(condition.match(value, number) for condition in self.conditions)


# --- matching -------------------------------------------------------------------------------------------------

# A leaf value of the record and the array elements it sits in: ((array id, index), ...).
_Field = tuple[Any, tuple[tuple[int, int], ...]]


@dataclass(frozen=True, slots=True)
class _SubPattern:
    fields: tuple[tuple[str, _Leaf], ...]  # sorted as event-ruler sorts them (Java string order)

    def match(self, flat: Mapping[str, list[_Field]]) -> bool:
        return self._from(0, flat, {})

    def _from(self, index: int, flat: Mapping[str, list[_Field]], chosen: dict[int, int]) -> bool:
        if index == len(self.fields):
            return True
        path, leaf = self.fields[index]
        candidates = flat.get(path, ())
        # Absent, as far as the array elements chosen so far can see.
        absent = leaf.exists_false and not any(_consistent(chosen, arrays) for _, arrays in candidates)
        if absent and self._from(index + 1, flat, chosen):
            return True
        for value, arrays in candidates:
            if _consistent(chosen, arrays) and leaf.match(value):
                extended = {**chosen, **dict(arrays)} if arrays else chosen
                if self._from(index + 1, flat, extended):
                    return True
        return False


def _consistent(chosen: Mapping[int, int], arrays: tuple[tuple[int, int], ...]) -> bool:
    return all(chosen.get(array, index) == index for array, index in arrays)


@dataclass(frozen=True, slots=True)
class _Pattern:
    alternatives: tuple[_SubPattern, ...]
    paths: frozenset[str]
    prefixes: frozenset[str]  # every dotted prefix of a path, to skip the parts of a record no field names

    def match(self, record: Mapping[str, Any]) -> bool:
        flat: dict[str, list[_Field]] = {}
        _flatten(record, "", (), [0], self, flat)
        return any(alternative.match(flat) for alternative in self.alternatives)


def _flatten(  # noqa: PLR0917 - a recursive walk's state
    mapping: Mapping[str, Any],
    prefix: str,
    arrays: tuple[tuple[int, int], ...],
    counter: list[int],
    pattern: _Pattern,
    flat: dict[str, list[_Field]],
) -> None:
    for key, value in mapping.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if path not in pattern.prefixes:
            continue
        _flatten_value(value, path, arrays, counter, pattern, flat)


def _flatten_value(  # noqa: PLR0917 - a recursive walk's state
    value: Any,
    path: str,
    arrays: tuple[tuple[int, int], ...],
    counter: list[int],
    pattern: _Pattern,
    flat: dict[str, list[_Field]],
) -> None:
    if isinstance(value, Mapping):
        _flatten(value, path, arrays, counter, pattern, flat)
    elif isinstance(value, _ARRAYS):
        array = counter[0]
        counter[0] += 1
        elements = sorted(value, key=_set_order) if isinstance(value, (set, frozenset)) else value
        for index, element in enumerate(elements):
            if isinstance(element, (Mapping, *_ARRAYS)):
                _flatten_value(element, path, (*arrays, (array, index)), counter, pattern, flat)
            elif path in pattern.paths:
                flat.setdefault(path, []).append((_leaf_value(element), arrays))
    elif path in pattern.paths:
        flat.setdefault(path, []).append((_leaf_value(value), arrays))


def _set_order(value: Any) -> str:
    return repr(value)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Compiled patterns, OR'd; no patterns at all lets every record through."""

    patterns: tuple[_Pattern, ...]

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


def pattern_objects(value: Any) -> list[tuple[str, Any]]:
    """The parsed pattern objects of `patterns`/`where` (a list) or of a FilterCriteria, each with its path."""
    if isinstance(value, str):
        value = _parse_json(value, "")
    if isinstance(value, Mapping):
        value = value.get("FilterCriteria", value)
        items = value.get("Filters", []) if isinstance(value, Mapping) else []
        return [(f".Filters[{i}].Pattern", _loaded(item.get("Pattern"))) for i, item in enumerate(items)]
    return [(f"[{i}]", _loaded(item)) for i, item in enumerate(value or ())]


def _loaded(pattern: Any) -> Any:
    return _parse_json(pattern, "") if isinstance(pattern, str) else pattern


def numeric_on_string_paths(pattern: Any, path: str = "") -> list[str]:
    """Where a pattern asks for a number under a DynamoDB "N" or "NS" key: in the Lambda record those values are
    strings, so such a condition can never match (a `numeric` range, a number literal, anything-but numbers)."""
    found: list[str] = []
    if not isinstance(pattern, Mapping):
        return found
    for key, value in pattern.items():
        child = _key(path, str(key))
        if key == "$or" and isinstance(value, list):
            for i, alternative in enumerate(value):
                found += numeric_on_string_paths(alternative, _index(child, i))
        elif isinstance(value, Mapping):
            found += numeric_on_string_paths(value, child)
        elif isinstance(value, list) and str(key).rsplit(".", 1)[-1] in {"N", "NS"} and any(map(_asks_number, value)):
            found.append(child)
    return found


def _asks_number(condition: Any) -> bool:
    if isinstance(condition, bool):
        return False
    if isinstance(condition, (int, float, Decimal)):
        return True
    if isinstance(condition, Mapping):
        if "numeric" in condition:
            return True
        excluded = condition.get("anything-but")
        items = excluded if isinstance(excluded, list) else [excluded]
        return any(isinstance(item, (int, float, Decimal)) and not isinstance(item, bool) for item in items)
    return False


def _compile_pattern(pattern: Any, path: str) -> _Pattern:
    if isinstance(pattern, str):
        pattern = _parse_json(pattern, path)
    if not isinstance(pattern, Mapping):
        raise FilterPatternError(path, f"a pattern must be a JSON object, got {_kind(pattern)}")
    rules: list[dict[str, _Leaf]] = []
    _compile_object(pattern, path, "", rules, inside_or=False)
    alternatives = tuple(_SubPattern(tuple(sorted(rule.items(), key=_java_order))) for rule in rules)
    _check_complexity(rules, path)
    paths = frozenset(key for rule in rules for key in rule)
    prefixes = frozenset(prefix for key in paths for prefix in _dotted_prefixes(key))
    return _Pattern(alternatives=alternatives, paths=paths, prefixes=prefixes)


def _java_order(item: tuple[str, Any]) -> bytes:
    # Java orders strings by UTF-16 code unit, which differs from code point order above U+FFFF.
    return item[0].encode("utf-16-be")


def _dotted_prefixes(key: str) -> Iterator[str]:
    position = key.find(".")
    while position != -1:
        yield key[:position]
        position = key.find(".", position + 1)
    yield key


def _parse_json(text: str, path: str) -> Any:
    try:
        # Decimal keeps pattern numbers exact, so a number a double would round is noticed.
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as error:  # JSONDecodeError, or NaN/Infinity refused below
        raise FilterPatternError(path, f"not valid JSON: {error}") from error


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _compile_object(
    pattern: Mapping[str, Any],
    path: str,
    field: str,
    rules: list[dict[str, _Leaf]],
    *,
    inside_or: bool,
) -> None:
    """Add the object's fields to every sub-pattern in `rules` (event-ruler's JsonRuleCompiler, step by step)."""
    if not pattern:
        raise FilterPatternError(path, "empty object: name at least one field to match")
    for key, value in pattern.items():
        if not isinstance(key, str):
            raise FilterPatternError(path, f"field names must be strings, got {key!r}")
        child = _key(path, key)
        if key == "$or":
            _compile_or(value, child, field, rules)
            continue
        if inside_or and key in _RESERVED_IN_OR:
            raise FilterPatternError(child, f"{key!r} is an operator name, not a field name, inside $or")
        name = f"{field}.{key}" if field else key
        if isinstance(value, Mapping):
            _compile_object(value, child, name, rules, inside_or=inside_or)
        elif isinstance(value, list):
            leaf = _compile_leaf(value, child)
            if not rules:
                rules.append({})
            for rule in rules:
                # A field named twice (nested and dotted) keeps the last, as in event-ruler.
                rule[name] = leaf
        else:
            raise FilterPatternError(
                child, f"expected an array of match conditions or a nested object, got {_kind(value)}"
            )


def _compile_or(value: Any, path: str, field: str, rules: list[dict[str, _Leaf]]) -> None:
    if not isinstance(value, list):
        raise FilterPatternError(path, "$or must be an array of at least two pattern objects")
    before = [dict(rule) for rule in rules]
    rules.clear()
    for i, alternative in enumerate(value):
        where = _index(path, i)
        if not isinstance(alternative, Mapping):
            raise FilterPatternError(where, f"$or takes pattern objects, got {_kind(alternative)}")
        branch = [dict(rule) for rule in before] or [{}]
        _compile_object(alternative, where, field, branch, inside_or=True)
        rules.extend(branch)
    if len(value) < 2:  # noqa: PLR2004 - one alternative is not an OR
        raise FilterPatternError(path, "$or must be an array of at least two pattern objects")


def _compile_leaf(values: list[Any], path: str) -> _Leaf:
    if not values:
        raise FilterPatternError(path, "empty array: give at least one match condition")
    strings: set[str] = set()
    ips: set[tuple[int, int]] = set()
    doubles: set[float] = set()
    number_texts: set[str] = set()
    literals: set[str] = set()
    exists: set[bool] = set()
    conditions: list[_Condition] = []
    for i, value in enumerate(values):
        where = _index(path, i)
        if value is None or isinstance(value, bool):
            literals.add(json.dumps(value))
        elif isinstance(value, str):
            address = _ip(value)
            if address is not None:
                ips.add(address)
            else:
                strings.add(value)
        elif (number := _number(value)) is not None:
            if number.double is not None:
                doubles.add(number.double)
            else:
                number_texts.add(number.text)
        elif isinstance(value, Mapping):
            flag = _compile_operator(value, where, conditions)
            if flag is not None:
                exists.add(flag)
        else:
            raise FilterPatternError(
                where, f"expected a string, number, true, false, null or an operator object, got {_kind(value)}"
            )
    return _Leaf(
        strings=frozenset(strings),
        ips=frozenset(ips),
        doubles=frozenset(doubles),
        number_texts=frozenset(number_texts),
        literals=frozenset(literals),
        exists_true=True in exists,
        exists_false=False in exists,
        conditions=tuple(conditions),
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
        case "exactly":
            # event-ruler's explicit exact match; an IP address stays a plain string here.
            conditions.append(_Exact(_string(operand, where, name)))
        case "prefix" | "suffix":
            conditions.append(_compile_affix(name, operand, where))
        case "equals-ignore-case":
            regex = re.compile(_case_regex(_string(operand, where, name)) + r"\Z", re.DOTALL)
            conditions.append(_Regex(regex, anchored_end=False))
        case "wildcard":
            text = _string(operand, where, name)
            conditions.append(_Regex(_wildcard_regex(text, where), anchored_end=False, wildcard=text))
        case "numeric":
            conditions.append(_compile_numeric(operand, where))
        case "cidr":
            conditions.append(_compile_cidr(operand, where))
        case "anything-but":
            conditions.append(_compile_anything_but(operand, where))
        case _:
            raise FilterPatternError(path, f"unknown operator {name!r}")
    return None


@dataclass(frozen=True, slots=True)
class _Exact:
    text: str

    def match(self, value: Any, _number: _Number | None) -> bool:
        return isinstance(value, str) and value == self.text


def _compile_affix(name: str, operand: Any, path: str) -> _Condition:
    # EventBridge also takes {"prefix": {"equals-ignore-case": "x"}}.
    if isinstance(operand, Mapping):
        if set(operand) != {"equals-ignore-case"}:
            raise FilterPatternError(path, f"{name} takes a string or {{'equals-ignore-case': string}}")
        inner = _key(path, "equals-ignore-case")
        case_regex = _case_regex(_string(operand["equals-ignore-case"], inner, "equals-ignore-case"))
        if name == "prefix":
            return _Regex(re.compile(case_regex, re.DOTALL), anchored_end=False)
        return _Regex(re.compile(case_regex + r"\Z", re.DOTALL), anchored_end=True)
    text = _string(operand, path, name)
    return _Prefix(text) if name == "prefix" else _Suffix(text)


def _compile_numeric(operand: Any, path: str) -> _Numeric:
    if not isinstance(operand, list) or len(operand) not in {2, 4}:
        raise FilterPatternError(
            path, 'numeric takes one or two comparisons, e.g. ["=", 5] or [">", 0, "<=", 5]; got ' + _short(operand)
        )
    first, bound = operand[0], _numeric_operand(operand, 1, path)
    if len(operand) == 2:  # noqa: PLR2004 - the single-comparison form
        match first:
            case "=":
                return _Numeric(bound, lower_open=False, upper=bound, upper_open=False)
            case ">" | ">=":
                return _Numeric(bound, lower_open=first == ">", upper=math.inf, upper_open=False)
            case "<" | "<=":
                return _Numeric(-math.inf, lower_open=False, upper=bound, upper_open=first == "<")
        raise FilterPatternError(_index(path, 0), f"unknown numeric operator {_short(first)}; use =, <, <=, > or >=")
    if first not in {">", ">="}:
        raise FilterPatternError(_index(path, 0), "a range starts with > or >= and ends with < or <=")
    second, top = operand[2], _numeric_operand(operand, 3, path)
    if second not in {"<", "<="}:
        raise FilterPatternError(_index(path, 2), "a range starts with > or >= and ends with < or <=")
    if not bound < top:
        raise FilterPatternError(path, f"numeric range is empty: lower bound {operand[1]} is not below {operand[3]}")
    return _Numeric(bound, first == ">", top, second == "<")


def _numeric_operand(operand: list[Any], i: int, path: str) -> float:
    raw = operand[i]
    number = _number(raw)
    if number is None:
        raise FilterPatternError(_index(path, i), f"numeric operand must be a number, got {_kind(raw)}")
    if number.double is None:
        raise FilterPatternError(
            _index(path, i), f"{number.text} is not exactly a double (IEEE 754), the numbers Lambda can compare"
        )
    return number.double


def _compile_cidr(operand: Any, path: str) -> _Cidr:
    text = _string(operand, path, "cidr")
    parts = text.split("/")
    while parts and not parts[-1]:  # Java's split drops trailing empty parts
        parts.pop()
    if len(parts) != 2 or not _MASK_TEXT.fullmatch(parts[1]):  # noqa: PLR2004 - address and mask
        raise FilterPatternError(path, f"not a CIDR block (ADDRESS/BITS): {_short(text)}")
    bits = int(parts[1])
    address = _ip(parts[0])
    if address is None:
        raise FilterPatternError(path, f"not an IP address: {_short(parts[0])}")
    version, value = address
    width = 32 if version == 4 else 128  # noqa: PLR2004 - IPv4
    if not 0 <= bits < width:
        raise FilterPatternError(path, f"mask bits must be 0 to {width - 1} for IPv{version}, got {bits}")
    host = (1 << (width - bits)) - 1
    return _Cidr(version, value & ~host, value | host)


def _compile_anything_but(operand: Any, path: str) -> _AnythingBut:
    if isinstance(operand, Mapping):
        conditions = _compile_anything_but_operator(operand, path)
        texts = tuple(c.wildcard for c in conditions if isinstance(c, _Regex) and c.wildcard is not None)
        return _AnythingBut(frozenset(), frozenset(), conditions, texts)
    items = _one_or_many(operand, path, "anything-but")
    if not items:
        raise FilterPatternError(path, "empty array: give at least one value")
    strings: set[str] = set()
    doubles: set[float] = set()
    for at, item in items:
        if isinstance(item, str):
            strings.add(item)
            continue
        number = _number(item)
        if number is None:
            raise FilterPatternError(at, f"anything-but takes strings or numbers, got {_kind(item)}")
        if number.double is None:
            raise FilterPatternError(
                at, f"{number.text} is not exactly a double (IEEE 754), the numbers Lambda compares"
            )
        doubles.add(number.double)
    if strings and doubles:
        raise FilterPatternError(path, "anything-but takes all strings or all numbers, not both")
    return _AnythingBut(frozenset(strings), frozenset(doubles), ())


def _compile_anything_but_operator(operand: Mapping[str, Any], path: str) -> tuple[_Condition, ...]:
    if len(operand) != 1:
        raise FilterPatternError(path, "anything-but takes one of prefix, suffix, equals-ignore-case or wildcard")
    ((name, inner),) = operand.items()
    where = _key(path, str(name))
    if name not in {"prefix", "suffix", "equals-ignore-case", "wildcard"}:
        raise FilterPatternError(path, f"unknown operator {name!r} inside anything-but")
    conditions: list[_Condition] = []
    items = _one_or_many(inner, where, name)
    if not items:
        # event-ruler compiles an empty list here and then fails to add the rule: AWS cannot take it.
        raise FilterPatternError(where, "empty array: give at least one value")
    for at, text in items:
        if not isinstance(text, str):
            raise FilterPatternError(at, f"{name} inside anything-but takes strings, got {_kind(text)}")
        match name:
            case "prefix" | "suffix":
                # AWS refuses an empty one (it would exclude every string) and {"equals-ignore-case": ...}.
                if not text:
                    raise FilterPatternError(at, f"an empty {name} is not allowed inside anything-but")
                conditions.append(_Prefix(text) if name == "prefix" else _Suffix(text))
            case "equals-ignore-case":
                regex = re.compile(_case_regex(text) + r"\Z", re.DOTALL)
                conditions.append(_Regex(regex, anchored_end=False))
            case _:
                conditions.append(_Regex(_wildcard_regex(text, at), anchored_end=False, wildcard=text))
    return tuple(conditions)


def _one_or_many(operand: Any, path: str, operator: str) -> list[tuple[str, Any]]:
    """An operand given as one value or as an array, each with its own path."""
    if isinstance(operand, list):
        return [(_index(path, i), item) for i, item in enumerate(operand)]
    if isinstance(operand, Mapping) or operand is None or isinstance(operand, bool):
        raise FilterPatternError(path, f"{operator} takes a string, a number or an array, got {_kind(operand)}")
    return [(path, operand)]


def _wildcard_regex(text: str, path: str) -> re.Pattern[str]:
    parts = [".*" if token is None else re.escape(token) for token in _wildcard_tokens(text, path)]
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def _wildcard_tokens(text: str, path: str) -> list[str | None]:
    """The wildcard's characters, None for each unescaped `*`; refuses what event-ruler's parser refuses."""
    tokens: list[str | None] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char == "*":
            if text.startswith("*", position + 1):
                raise FilterPatternError(path, f"consecutive '*' at {position} in wildcard {text!r}")
            tokens.append(None)
        elif char == "\\":
            following = text[position + 1 : position + 2]
            if following not in {"*", "\\"}:
                raise FilterPatternError(path, f"invalid escape at {position} in wildcard {text!r}; only \\* and \\\\")
            tokens.append(following)
            position += 1
        else:
            tokens.append(char)
        position += 1
    return tokens


# --- wildcard complexity ------------------------------------------------------------------------------------
# AWS refuses a pattern whose wildcards make matching too non-deterministic. event-ruler measures it
# (MachineComplexityEvaluator): the most wildcard-pattern states a worst-case value can keep alive at once in one
# field's byte machine, counting a state's pending `*` loop too. This is that measure, over the same machines.

# A state of one wildcard's byte automaton: (pattern, occurrence, value, position) after its first `*`, or
# (pattern, prefix bytes) / (pattern, prefix bytes, "*") up to it: event-ruler shares a pattern's determinate prefix
# and first `*` between occurrences, and keeps the rest apart (a repeated wildcard counts twice).
_State = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Automaton:
    steps: dict[_State, dict[int | None, set[_State]]]  # None: any byte
    loop: dict[_State, _State]  # a state's pending `*` loop, if the next token is a `*`
    alphabet: frozenset[int]


def _check_complexity(rules: list[dict[str, _Leaf]], path: str) -> None:
    # One byte machine per field per state of event-ruler's name automaton: sub-patterns that share the fields
    # before it (same names, same conditions) share it, and each adds its wildcards again.
    machines: dict[tuple[Any, ...], list[tuple[str, tuple[str, ...]]]] = {}
    for rule in rules:
        previous: tuple[Any, ...] = ()
        for name, leaf in sorted(rule.items(), key=_java_order):
            wildcard_patterns = _wildcard_patterns(leaf)
            if wildcard_patterns:
                machines.setdefault((previous, name), []).extend(wildcard_patterns)
            if _absence_only(leaf):
                # event-ruler's evaluator follows value matches only: what lies behind an `exists: false` alone is
                # never measured.
                break
            previous = (*previous, name, leaf)
    for patterns in machines.values():
        complexity = _complexity(patterns)
        if complexity > WILDCARD_COMPLEXITY_LIMIT:
            raise FilterPatternError(
                path,
                f"wildcard pattern too complex (complexity {complexity}, AWS allows {WILDCARD_COMPLEXITY_LIMIT}): use "
                "fewer '*' or fewer repeated characters after a '*'",
            )


def _absence_only(leaf: _Leaf) -> bool:
    return (
        leaf.exists_false
        and not (leaf.exists_true or leaf.strings or leaf.ips or leaf.doubles or leaf.number_texts or leaf.literals)
        and not leaf.conditions
    )


def _wildcard_patterns(leaf: _Leaf) -> list[tuple[str, tuple[str, ...]]]:
    found: list[tuple[str, tuple[str, ...]]] = []
    for condition in leaf.conditions:
        if isinstance(condition, _AnythingBut) and condition.wildcard_texts:
            found.append(("anything-but", tuple(sorted(set(condition.wildcard_texts)))))
        elif isinstance(condition, _Regex) and condition.wildcard is not None:
            found.append(("wildcard", (condition.wildcard,)))
    return found


def _complexity(patterns: list[tuple[str, tuple[str, ...]]]) -> int:
    automaton = _automaton(patterns)
    start: frozenset[_State] = frozenset({("start",)})
    seen = {start}
    pending = [start]
    worst = 0
    while pending:
        current = pending.pop()
        for byte in (*automaton.alphabet, -1):
            following: set[_State] = set()
            for state in current:
                moves = automaton.steps.get(state, {})
                following.update(moves.get(None, ()))
                following.update(moves.get(byte, ()))
            if not following:
                continue
            size = len(following) + sum(
                1 for state in following if (loop := automaton.loop.get(state)) is not None and loop not in following
            )
            worst = max(worst, size)
            if worst > WILDCARD_COMPLEXITY_LIMIT:
                return worst
            frozen = frozenset(following)
            if frozen not in seen:
                seen.add(frozen)
                pending.append(frozen)
    return worst


def _automaton(patterns: list[tuple[str, tuple[str, ...]]]) -> _Automaton:
    steps: dict[_State, dict[int | None, set[_State]]] = {}
    loop: dict[_State, _State] = {}
    alphabet: set[int] = set()

    def add(source: _State, byte: int | None, target: _State) -> None:
        steps.setdefault(source, {}).setdefault(byte, set()).add(target)

    for occurrence, pattern in enumerate(patterns):
        for value_index, text in enumerate(pattern[1]):
            # Bytes as event-ruler walks them: the value between its JSON quotes, `*` as any run of bytes.
            tokens: list[int | None] = [0x22]
            for char in _wildcard_tokens(text, ""):
                tokens.extend([None] if char is None else char.encode("utf-8"))
            tokens.append(0x22)
            alphabet.update(token for token in tokens if token is not None)
            # Every state a token can be entered from: the previous state, and the `*` loop before it, if any.
            sources: list[_State] = [("start",)]
            prefix = b""
            determinate = True
            for position, token in enumerate(tokens):
                if token is None:
                    star: _State = (
                        (pattern, prefix, "*") if determinate else (pattern, occurrence, value_index, position, "*")
                    )
                    for source in sources:
                        add(source, None, star)
                        loop[source] = star
                    add(star, None, star)
                    sources = [*sources, star]
                    determinate = False
                    continue
                if determinate:
                    prefix += bytes([token])
                    state: _State = (pattern, prefix)
                else:
                    state = (pattern, occurrence, value_index, position)
                for source in sources:
                    add(source, token, state)
                sources = [state]
    return _Automaton(steps, loop, frozenset(alphabet))


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
