"""Imports inside `consumer/` point one way: down the floors below, never up.

Every module of the package sits on one floor. A module may import modules of its own floor or of a floor below
it, never above: a sink cannot reach for the processor, nor the decoder for the router. A new module fails this
test until it is given a floor here, so that where it sits is decided, not drifted into.

Every import counts, at module level or inside a function, under TYPE_CHECKING or not: a deferred import is
still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "consumer"

# Bottom first.
FLOORS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "foundation: the meaning of a record, the error tree, names shared between processes, and leaf utilities",
        frozenset(
            {
                "consumer",
                "consumer.events",
                "consumer.errors",
                "consumer.clients",
                "consumer.backoff",
                "consumer.jsontext",
                "consumer.environment",
                "consumer.addresses",
                "consumer.batching",
                "consumer.files",
                "consumer.health",
                "consumer.metrics",
                "consumer.server",
            }
        ),
    ),
    (
        "reading: decoding, filtering and rendering records",
        frozenset(
            {
                "consumer.decode",
                "consumer.filters",
                "consumer.formats",
                "consumer.lambda_runtime",
                "consumer.logs",
            }
        ),
    ),
    (
        "configuration",
        frozenset({"consumer.config", "consumer.streamswitch", "consumer.esm"}),
    ),
    (
        "sinks",
        frozenset(
            {
                "consumer.sinks",
                "consumer.sinks.base",
                "consumer.sinks.registry",
                "consumer.sinks.aws",
                "consumer.sinks.eventbridge",
                "consumer.sinks.file",
                "consumer.sinks.handler",
                "consumer.sinks.log",
                "consumer.sinks.memory",
                "consumer.sinks.sns",
                "consumer.sinks.sqs",
                "consumer.sinks.webhook",
            }
        ),
    ),
    (
        "delivery: routing, retries, dead letters, checkpoints",
        frozenset({"consumer.router", "consumer.delivery", "consumer.deadletter", "consumer.checkpoint"}),
    ),
    (
        "services: the processes and commands built on the pipeline",
        frozenset(
            {
                "consumer.processor",
                "consumer.supervisor",
                "consumer.aws",
                "consumer.preflight",
                "consumer.redrive",
                "consumer.status",
                "consumer.demo",
                "consumer.local",
            }
        ),
    ),
    (
        "command line",
        frozenset({"consumer.cli", "consumer.__main__"}),
    ),
)

# Started as a program (`python -m consumer.processor`), never imported: importing it loads amazon_kclpy and the
# whole pipeline, and what others need of it (environment names, exit statuses) is in consumer.environment.
NEVER_IMPORTED = frozenset({"consumer.processor"})


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports (`from consumer import files` names the module consumer.files)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in known else base)
    return {module for module in found if module in known and module != name}


def _floor_of() -> dict[str, int]:
    return {module: number for number, (_, modules) in enumerate(FLOORS) for module in modules}


def test_every_module_has_exactly_one_floor() -> None:
    modules = set(_modules())
    assigned = [module for _, floor in FLOORS for module in floor]
    twice = sorted({module for module in assigned if assigned.count(module) > 1})
    assert not twice, f"on more than one floor: {twice}"
    unassigned = sorted(modules - set(assigned))
    assert not unassigned, f"modules without a floor (give each one a floor in FLOORS): {unassigned}"
    gone = sorted(set(assigned) - modules)
    assert not gone, f"FLOORS names modules that no longer exist: {gone}"


def test_imports_never_point_up() -> None:
    modules = _modules()
    floor = _floor_of()
    upward = [
        f"{name} (floor {floor[name]}: {FLOORS[floor[name]][0]}) imports {imported} "
        f"(floor {floor[imported]}: {FLOORS[floor[imported]][0]})"
        for name, path in modules.items()
        for imported in sorted(_imports(name, path, set(modules)))
        if name in floor and imported in floor and floor[imported] > floor[name]
    ]
    assert not upward, "imports against the direction of the floors:\n" + "\n".join(upward)


def test_nothing_imports_the_processor() -> None:
    modules = _modules()
    importers = sorted(name for name, path in modules.items() if _imports(name, path, set(modules)) & NEVER_IMPORTED)
    assert not importers, f"import consumer.processor: {importers}"


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: an import it cannot see would make the tests above pass vacuously."""
    module = tmp_path / "consumer" / "sinks" / "probe.py"
    module.parent.mkdir(parents=True)
    (module.parent / "__init__.py").write_text("")
    module.write_text(
        "from consumer.sinks import base\n"
        "from ..delivery import Pipeline\n"
        "def late() -> None:\n"
        "    import consumer.processor\n"
    )
    known = {"consumer.sinks", "consumer.sinks.base", "consumer.delivery", "consumer.processor"}
    seen = _imports(_module_name(module, tmp_path / "consumer"), module, known)
    assert seen == {"consumer.sinks.base", "consumer.delivery", "consumer.processor"}
