"""Judge the filters on a file of peer (pattern, event, expected) cases and print the agreement rate.

    .venv/bin/python tests/ruler/conformance.py PATH/event_patterns.json [--show N]

The file is not part of this repository (the suite's own tests stand without it). Each case has `pattern` or
`pattern_text` (one pattern or a list of them, OR'd), `event`, `event_text` or `lambda_record`, and `expected`
(match, no_match, valid, invalid). `kind: lambda-dynamodb` cases go through what the service does to a stream
record: the adapter's shape, decoding, and the Lambda record rebuilt from it.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from consumer.decode import event_from_record
from consumer.errors import DecodeError, FilterPatternError
from consumer.events import StreamContext
from consumer.filters import compile_patterns
from consumer.formats import to_lambda_record

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/conformance/stream/2024-01-01T00:00:00.000"


def _patterns(case: dict[str, Any]) -> list[Any]:
    for several in ("patterns", "patterns_text"):
        if several in case:
            return list(case[several])
    return [case.get("pattern", case.get("pattern_text"))]


def _event(case: dict[str, Any]) -> Any:
    if "lambda_record" in case and case.get("kind") == "lambda-dynamodb":
        record = copy.deepcopy(case["lambda_record"])
        arn = record.pop("eventSourceARN", ARN)
        created = record["dynamodb"].get("ApproximateCreationDateTime", 0)
        record["dynamodb"]["ApproximateCreationDateTime"] = int(Decimal(str(created)) * 1000)
        context = StreamContext(stream_arn=arn, region=record.get("awsRegion", "us-east-1"))
        return to_lambda_record(event_from_record(record, context), context, private=False)
    if "event_text" in case:
        return json.loads(case["event_text"], parse_float=Decimal)
    return case.get("event", case.get("lambda_record"))


def judge(case: dict[str, Any]) -> str:
    try:
        compiled = compile_patterns(_patterns(case))
    except FilterPatternError:
        return "invalid"
    if case["expected"] in {"valid", "invalid"}:
        return "valid"
    try:
        event = _event(case)
    except (DecodeError, ValueError, KeyError) as error:
        return f"error: {error}"
    if not isinstance(event, dict):
        return "error: the event is not an object"
    return "match" if compiled.matches(event) else "no_match"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--show", type=int, default=20, help="print this many disagreements")
    args = parser.parse_args()
    cases = json.loads(args.path.read_text(encoding="utf-8"))["cases"]
    by_source: collections.Counter[tuple[str, bool]] = collections.Counter()
    disagreements = []
    for case in cases:
        ours = judge(case)
        agreed = ours == case["expected"]
        by_source[(case["source"]["repo"], agreed)] += 1
        if not agreed:
            disagreements.append((case, ours))
    agreed_total = len(cases) - len(disagreements)
    print(f"{agreed_total}/{len(cases)} agree ({100 * agreed_total / len(cases):.2f} %)")
    for repo in sorted({repo for repo, _ in by_source}):
        print(f"  {repo}: {by_source[(repo, True)]} agree, {by_source[(repo, False)]} disagree")
    for case, ours in disagreements[: args.show]:
        pattern = case.get("pattern", case.get("pattern_text"))
        print(f"- {case['id']}: expected {case['expected']}, ours {ours}; pattern {json.dumps(pattern)[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
