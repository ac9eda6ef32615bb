"""Our filters against AWS's own matcher, event-ruler: generated (pattern, Lambda record) pairs must be judged the
same, including which patterns are refused. `make test` runs a bounded, seeded count;
`make test-filters-differential` a larger one (FILTERS_DIFFERENTIAL_EXAMPLES)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from ruler_client import Ruler, available
from strategies import pattern_objects, pattern_text, records

from consumer.errors import FilterPatternError
from consumer.filters import WILDCARD_COMPLEXITY_LIMIT, compile_patterns

EXAMPLES = int(os.environ.get("FILTERS_DIFFERENTIAL_EXAMPLES", "400"))
EVENTS_PER_PATTERN = 6

pytestmark = pytest.mark.differential


@pytest.fixture(scope="module")
def ruler() -> Iterator[Ruler]:
    if not available():
        if os.environ.get("CONSUMER_REQUIRE_RULER"):
            pytest.fail("the event-ruler runner is not built: run `make ruler`")
        pytest.skip("the event-ruler runner is not built (`make ruler`; `make test` builds it)")
    runner = Ruler(WILDCARD_COMPLEXITY_LIMIT)
    yield runner
    runner.close()


def _ours(text: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        compiled = compile_patterns([text])
    except FilterPatternError as error:
        return {"valid": False, "error": str(error)}
    return {"valid": True, "matches": [compiled.matches(event) for event in events]}


def judge_both(ruler: Ruler, pattern: Any, events: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    text = pattern_text(pattern)
    theirs = ruler.judge(text, [json.dumps(event) for event in events])
    return theirs, _ours(text, events)


def agree(theirs: dict[str, Any], ours: dict[str, Any]) -> bool:
    if theirs["valid"] != ours["valid"]:
        return False
    return not theirs["valid"] or theirs["matches"] == ours["matches"]


@seed(20240613)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    database=None,
)
@given(pattern=pattern_objects(), events=st.lists(records(), min_size=EVENTS_PER_PATTERN, max_size=EVENTS_PER_PATTERN))
def test_filters_agree_with_event_ruler(ruler: Ruler, pattern: Any, events: list[dict[str, Any]]) -> None:
    theirs, ours = judge_both(ruler, pattern, events)
    assert agree(theirs, ours), (
        f"pattern {pattern_text(pattern)}\nevent-ruler: {theirs}\nours:        {ours}\n"
        + "\n".join(json.dumps(event) for event in events)
    )
