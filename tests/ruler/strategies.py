"""Hypothesis strategies: Lambda-shaped DynamoDB Streams records and the filter patterns Lambda users write for them.

Values come from small vocabularies on purpose: random text would almost never hit a pattern, and the cases that
matter are the near misses (case, prefixes, numbers spelt as strings, IP spellings, dotted names, arrays).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

ATTRIBUTES = ["id", "name", "price", "tags", "dims", "a.b", "a", "b", "qty", "ip"]
NESTED = ["unit", "width", "b", "a"]
STRINGS = [
    "", "a", "A", "ab", "abc", "ABC", "aBc", "Wireless Mouse", "wireless", "prod-1", "prod-12", "x*y", "x\\y",
    "10.0.0.1", "10.0.0.17", "10.1.2.3", "2001:db8::1", "2001:DB8:0:0:0:0:0:1", "::ffff:a00:1", "50", "25.99",
    "é", "É", "ß", "SS", "ss", "a.b", "true", "null", "eu-west-1", "us-east-1",
]  # fmt: skip
NUMBER_TEXTS = ["50", "50.0", "25.99", "0", "-1", "1e2", "101", "12345678901234567890123456789012345678", "0.1"]
# Numbers as they appear in patterns: some a double holds exactly, some it does not (1e400, 0.30000000000000001).
PATTERN_NUMBERS = [
    0, 1, -1, 20, 50, 100, 101, 1e2, 25.99, 0.1, 5e9, 1664559083.0, 1664559083, 12345678901234567890, 26, 1e20,
]  # fmt: skip
RAW_NUMBERS = ["0.30000000000000001", "1e400", "12345678901234567890", "-0", "1.0", "1E2"]
WILDCARDS = [
    "*", "a*", "*c", "a*c", "*a*", "prod-*", "*-1*", "x\\*y", "x\\\\y", "a**", "\\x", "ab\\", "*a*b*c*",
    "*:*:*:*:*:b/*", "a*a*a*a*", "*a*a*a*a*a*", "W*M*", "*.*.*.*",
]  # fmt: skip
CIDRS = ["10.0.0.0/8", "10.0.0.0/24", "10.0.0.16/28", "10.0.0.1/32", "0.0.0.0/0", "2001:db8::/32", "10.0.0.0", "x/8"]
EVENT_NAMES = ["INSERT", "MODIFY", "REMOVE"]

strings = st.sampled_from(STRINGS)
number_texts = st.sampled_from(NUMBER_TEXTS)


def typed_values(depth: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    """One DynamoDB attribute value as Lambda delivers it: {"S": ...}, {"N": "..."}, {"M": {...}}, ..."""
    leaves = st.one_of(
        st.builds(lambda s: {"S": s}, strings),
        st.builds(lambda s: {"S": s}, strings),
        st.builds(lambda n: {"N": n}, number_texts),
        st.builds(lambda b: {"BOOL": b}, st.booleans()),
        st.just({"NULL": True}),
        st.builds(lambda v: {"SS": v}, st.lists(strings, min_size=1, max_size=3, unique=True)),
        st.builds(lambda v: {"NS": v}, st.lists(number_texts, min_size=1, max_size=3, unique=True)),
    )
    if depth == 0:
        return leaves
    inner = typed_values(depth - 1)
    return st.one_of(
        leaves,
        st.builds(lambda m: {"M": m}, st.dictionaries(st.sampled_from(NESTED), inner, max_size=3)),
        st.builds(lambda items: {"L": items}, st.lists(inner, max_size=3)),
    )


images = st.dictionaries(st.sampled_from(ATTRIBUTES), typed_values(), min_size=2, max_size=6)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": draw(st.sampled_from([1664559083.0, 1664559084.0, 1.5e9])),
        "Keys": {"id": {"S": draw(st.sampled_from(["prod-1", "prod-12", "a"]))}},
        "SequenceNumber": draw(st.sampled_from(["111", "222"])),
        "SizeBytes": draw(st.sampled_from([26, 50, 101])),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    for image in ("NewImage", "OldImage"):
        if draw(st.booleans()):
            dynamodb[image] = draw(images)
    return {
        "eventID": "c4ca4238a0b923820dcc509a6f75849b",
        "eventName": draw(st.sampled_from(EVENT_NAMES)),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": draw(st.sampled_from(["us-east-1", "eu-west-1"])),
        "dynamodb": dynamodb,
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/2024-01-01T00:00:00.000",
    }


# --- patterns -------------------------------------------------------------------------------------------------


class _Raw:
    def __init__(self, text: str) -> None:
        self.text = text


pattern_numbers = st.sampled_from(PATTERN_NUMBERS)
# A raw number is spliced into the pattern's JSON text as written (json would rewrite 1e400 or round 0.3...1).
raw_numbers = st.builds(_Raw, st.sampled_from(RAW_NUMBERS))


any_number = st.one_of(pattern_numbers, raw_numbers)
# Not empty: event-ruler 1.8.1 takes `{"anything-but": {"prefix": []}}` beside another condition (and then matches
# nothing with it) but fails to add the rule when the list stands with others of some kinds (a NullPointerException
# in Machine.addRule). We refuse an empty list always; that deliberate difference is tested in test_filters.py.
string_or_list = st.one_of(strings, st.lists(strings, min_size=1, max_size=3))


def _numeric() -> st.SearchStrategy[Any]:
    op = st.sampled_from(["=", ">", ">=", "<", "<=", "!", "=="])
    return st.one_of(
        st.builds(lambda o, n: [o, n], op, any_number),
        st.builds(
            lambda lo, a, hi, b: [lo, a, hi, b],
            st.sampled_from([">", ">=", "<"]),
            any_number,
            st.sampled_from(["<", "<=", ">"]),
            any_number,
        ),
        st.builds(lambda n: [">", n, "<"], any_number),
    )


def _anything_but() -> st.SearchStrategy[Any]:
    return st.one_of(
        strings,
        pattern_numbers,
        st.lists(strings, min_size=1, max_size=3),
        st.lists(any_number, min_size=1, max_size=3),
        st.lists(st.one_of(strings, pattern_numbers), min_size=2, max_size=3),  # mixed: refused
        st.just([]),
        st.just(None),
        st.builds(lambda v: {"prefix": v}, st.one_of(string_or_list, st.just({"equals-ignore-case": "a"}))),
        st.builds(lambda v: {"suffix": v}, st.one_of(string_or_list, st.just({"equals-ignore-case": "c"}))),
        st.builds(lambda v: {"equals-ignore-case": v}, st.one_of(string_or_list, st.just([1]))),
        st.builds(
            lambda v: {"wildcard": v},
            st.one_of(st.sampled_from(WILDCARDS), st.lists(st.sampled_from(WILDCARDS), min_size=1, max_size=2)),
        ),
        st.builds(lambda v: {"numeric": v}, st.just([">", 1])),
    )


valid_conditions = st.one_of(
    strings,
    pattern_numbers,
    raw_numbers,
    st.sampled_from([True, False, None]),
    st.builds(lambda v: {"prefix": v}, st.one_of(strings, st.builds(lambda s: {"equals-ignore-case": s}, strings))),
    st.builds(lambda v: {"suffix": v}, st.one_of(strings, st.builds(lambda s: {"equals-ignore-case": s}, strings))),
    st.builds(lambda v: {"equals-ignore-case": v}, strings),
    st.builds(lambda v: {"wildcard": v}, st.sampled_from(WILDCARDS)),
    st.builds(lambda v: {"anything-but": v}, _anything_but()),
    st.builds(lambda v: {"numeric": v}, _numeric()),
    st.builds(lambda v: {"exists": v}, st.booleans()),
    st.builds(lambda v: {"cidr": v}, st.sampled_from(CIDRS)),
)
# Mostly conditions AWS accepts (so records get judged), some it refuses (so refusals get judged too).
conditions = st.one_of(
    valid_conditions,
    valid_conditions,
    valid_conditions,
    valid_conditions,
    valid_conditions,
    valid_conditions,
    st.sampled_from(
        [
            {},
            {"prefix": "a", "suffix": "c"},
            {"unknown-op": "a"},
            {"EXISTS": True},
            {"exists": "true"},
            {"equals-ignore-case": ["a"]},
            {"numeric": 5},
            {"prefix": ["a"]},
        ]
    ),
)
leaves = st.integers(0, 19).flatmap(lambda n: st.just([]) if n == 0 else st.lists(conditions, min_size=1, max_size=3))

TYPES = ["S", "S", "S", "N", "N", "BOOL", "NULL", "SS", "NS"]


@st.composite
def paths(draw: st.DrawFn) -> list[str]:
    """A path into the Lambda record, where records() puts values."""
    kind = draw(st.sampled_from(["top", "image", "image", "image", "image", "nested", "list"]))
    if kind == "top":
        return draw(
            st.sampled_from(
                [
                    ["eventName"],
                    ["eventSource"],
                    ["awsRegion"],
                    ["dynamodb", "SizeBytes"],
                    ["dynamodb", "ApproximateCreationDateTime"],
                    ["dynamodb", "Keys", "id", "S"],
                    ["missing"],
                ]
            )
        )
    image = draw(st.sampled_from(["NewImage", "NewImage", "OldImage", "Keys"]))
    attribute = draw(st.sampled_from(ATTRIBUTES))
    if kind == "image":
        return ["dynamodb", image, attribute, draw(st.sampled_from(TYPES))]
    if kind == "nested":
        return ["dynamodb", image, attribute, "M", draw(st.sampled_from(NESTED)), draw(st.sampled_from(TYPES))]
    return ["dynamodb", image, attribute, "L", draw(st.sampled_from(TYPES))]


def _nest(target: dict[str, Any], path: list[str], leaf: Any, dotted: int) -> None:
    # `dotted` joins the path's last components with "." (EventBridge reads "a.b" as nested a -> b).
    if dotted and len(path) > 1:
        cut = max(1, len(path) - dotted)
        path = [*path[:cut], ".".join(path[cut:])]
    node = target
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = leaf


@st.composite
def pattern_objects(draw: st.DrawFn, depth: int = 1) -> dict[str, Any]:
    pattern: dict[str, Any] = {}
    for path in draw(st.lists(paths(), min_size=1, max_size=3)):
        _nest(pattern, path, draw(leaves), draw(st.sampled_from([0, 0, 0, 1, 2])))
    if depth and draw(st.integers(0, 3)) == 0:
        alternatives = draw(st.lists(pattern_objects(depth=0), min_size=1, max_size=3))
        if draw(st.integers(0, 9)) == 0:
            alternatives[0]["prefix"] = ["x"]  # an operator name used as a field inside $or: refused
        where = draw(st.sampled_from([[], ["dynamodb"]]))
        node = pattern
        for part in where:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else node
        node["$or"] = alternatives
    return pattern


def pattern_text(pattern: Any) -> str:
    """The pattern's JSON text, raw numbers spliced in as written."""
    if isinstance(pattern, _Raw):
        return pattern.text
    if isinstance(pattern, dict):
        import json  # noqa: PLC0415

        return "{" + ", ".join(f"{json.dumps(k)}: {pattern_text(v)}" for k, v in pattern.items()) + "}"
    if isinstance(pattern, list):
        return "[" + ", ".join(pattern_text(v) for v in pattern) + "]"
    import json  # noqa: PLC0415

    return json.dumps(pattern)
