"""A client for RulerRunner: event-ruler (AWS's pattern matcher) in one long-lived JVM, judging over stdin/stdout.

`make ruler` builds it into build/ruler (test-only: nothing here reaches the image).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RULER_DIR = REPO / "build" / "ruler"
CLASSES = RULER_DIR / "classes"
LIB = RULER_DIR / "lib"


def available() -> bool:
    return (
        (CLASSES / "RulerRunner.class").is_file() and any(LIB.glob("event-ruler-*.jar")) and bool(shutil.which("java"))
    )


class Ruler:
    """One JVM; `judge` sends a pattern and its events and reads event-ruler's verdict."""

    def __init__(self, complexity_limit: int) -> None:
        java = shutil.which("java") or "java"
        self._process = subprocess.Popen(
            [java, "-XX:+UseSerialGC", "-Xss8m", "-cp", f"{CLASSES}:{LIB}/*", "RulerRunner", str(complexity_limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def judge(self, pattern: str, events: list[str]) -> dict[str, Any]:
        """{"valid": bool, "error": str, "matches": [bool, ...]} for the pattern's JSON text and events' JSON texts."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(json.dumps({"pattern": pattern, "events": events}) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the event-ruler runner stopped (exit status {self._process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)
        if self._process.stdout is not None:
            self._process.stdout.close()
