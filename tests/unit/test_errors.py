"""Every error class the package raises on purpose is defined in consumer/errors.py, in the tree its docstring draws.

A private exception (a leading underscore) may stay in its module: it carries control flow there and never leaves.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from consumer import errors
from consumer.checkpoint import checkpoint, error_from_kcl

PACKAGE = Path(__file__).resolve().parents[2] / "consumer"


def _is_exception_name(name: str) -> bool:
    return name.endswith(("Error", "Exception"))


def test_public_exception_classes_live_in_errors_py() -> None:
    elsewhere = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "errors.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and _is_exception_name(node.name)
    ]
    assert not elsewhere, f"define these in consumer/errors.py: {elsewhere}"


def test_the_docstring_draws_every_error_class() -> None:
    classes = [
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == errors.__name__
    ]
    assert errors.__doc__ is not None
    missing = [name for name in classes if name not in errors.__doc__]
    assert not missing, f"add to the tree in errors.py's docstring: {missing}"


def test_the_kcls_checkpoint_refusals_become_typed_errors() -> None:
    assert type(error_from_kcl("ShutdownException")) is errors.LeaseLostError
    assert type(error_from_kcl("ThrottlingException")) is errors.CheckpointThrottledError
    assert type(error_from_kcl("KinesisClientLibDependencyException")) is errors.CheckpointRetryableError
    assert type(error_from_kcl("InvalidStateException")) is errors.CheckpointError

    refusals = iter(["ThrottlingException", "KinesisClientLibDependencyException"])
    throttles: list[None] = []

    class Refusing:
        def checkpoint(self, sequence_number: str | None) -> None:
            del sequence_number
            name = next(refusals, None)
            if name is not None:
                raise error_from_kcl(name)

    checkpoint(Refusing(), "1", sleep=lambda _: None, on_throttle=lambda: throttles.append(None))
    assert len(throttles) == 1  # the throttle is counted by its type; the lease-table hiccup is not a throttle
