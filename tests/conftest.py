from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def load_fixture() -> Any:
    def load(name: str) -> Any:
        return json.loads((FIXTURES / name).read_text(encoding="utf-8"))

    return load


@pytest.fixture(autouse=True)
def _json_logs() -> None:
    from consumer.logs import configure_logging  # noqa: PLC0415

    configure_logging("DEBUG", json_output=True)
