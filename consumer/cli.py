"""Command line: parsing only; each command hands over to its module."""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from consumer import __version__
from consumer.config import Config, StartingPosition, load_config
from consumer.errors import ConfigError, ConfigProblem, ImportRefusedError, StartupError
from consumer.logs import configure_logging

EXIT_CONFIG = 2
EXIT_STARTUP = 3

DESCRIPTION = """\
Consume a DynamoDB stream outside Lambda. The Kinesis Client Library (KCL) holds the shard leases and the
checkpoints; Python filters, routes and formats each change and delivers it to sinks (webhook, SQS, SNS,
EventBridge, a Lambda handler, a file, the log), with retries and dead letters.

Start with `consumer demo` (a local endpoint, no AWS account), then
`consumer check-config --config FILE` and `consumer run --config FILE`."""

# (status, commands, meaning): the README's "Exit codes" table row for row, which a test holds them to.
EXIT_CODES = (
    ("0", "every command", "done; for run, a graceful stop with every final checkpoint written"),
    ("1", "run", "the engine stopped abnormally; nothing unsettled was checkpointed: restart it"),
    ("1", "redrive", "some entries could not be delivered again and were kept"),
    ("1", "demo", "the notifications did not all arrive in time, or the consumer exited"),
    ("2", "every command", "invalid configuration or arguments: each problem with its field path"),
    ("3", "every command", "cannot start: Java, jars, credentials, endpoint, table, stream, a sink or destination"),
    ("4", "run", "source.on_trimmed: fail stopped the worker at records lost to the stream's retention"),
    ("128+N", "run", "the engine was killed by signal N (e.g. 137 for SIGKILL)"),
)

_KCL_DIR = Path(__file__).resolve().parent / "kcl"  # where `make jars` puts the engine, as the supervisor reads it
_ENGINE_ARTIFACTS = (
    ("KCL", "amazon-kinesis-client", "kcl.version"),
    ("DynamoDB Streams Kinesis Adapter", "dynamodb-streams-kinesis-adapter", "adapter.version"),
)


def _epilog() -> str:
    width = max(len(status) for status, _, _ in EXIT_CODES)
    lines = [
        f"  {status:<{width}}  {'' if commands == 'every command' else commands + ': '}{meaning}"
        for status, commands, meaning in EXIT_CODES
    ]
    return "\n".join(["exit codes:", *lines, "", "Each command has its own --help, e.g. consumer run --help."])


def version_text(kcl_dir: Path = _KCL_DIR) -> str:
    """The service's version and the engine's: the jars that run when they are resolved, else the pom's pins."""
    jar_names = [p.name for p in (kcl_dir / "jars").glob("*.jar")]
    pins = _pom_properties(kcl_dir / "pom.xml")
    engine: list[str] = []
    resolved = True
    for label, artifact, prop in _ENGINE_ARTIFACTS:
        pattern = re.compile(rf"^{re.escape(artifact)}-(\d[^-]*)\.jar$")
        found = sorted(m.group(1) for m in map(pattern.match, jar_names) if m)
        if found:
            engine.append(f"{label} {', '.join(found)}")
        else:
            resolved = False
            engine.append(f"{label} {pins.get(prop, 'unknown')}")
    where = f"jars in {kcl_dir / 'jars'}" if resolved else "pinned in the pom; jars not resolved: make jars"
    python = f"Python {platform.python_version()} ({platform.python_implementation()})"
    return "\n".join((f"consumer {__version__}", f"engine: {'; '.join(engine)} ({where})", python))


def _pom_properties(pom: Path) -> dict[str, str]:
    from xml.etree import ElementTree as ET  # noqa: PLC0415 - only --version reads the pom

    try:
        root = ET.parse(pom).getroot()  # noqa: S314 - the package's own pom, not outside input
    except (OSError, ET.ParseError):
        return {}
    namespace = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""
    properties = root.find(f"{namespace}properties")
    if properties is None:
        return {}
    return {child.tag.removeprefix(namespace): (child.text or "").strip() for child in properties}


class _VersionAction(argparse.Action):
    # argparse's own version action would read the pom and list the jars whenever any command's parser is built.
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        sys.stdout.write(version_text() + "\n")
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except ConfigError as error:
        sys.stderr.write(f"consumer: {error}\n")
        return EXIT_CONFIG
    except StartupError as error:
        sys.stderr.write(f"consumer: cannot start: {error}\n")
        return EXIT_STARTUP
    except ImportRefusedError as error:
        sys.stderr.write(f"consumer: import-esm: {error}\n")
        return EXIT_CONFIG
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consumer",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="print the service's version, the engine's (KCL, adapter) and Python's"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="consume the configured stream until stopped (SIGTERM/SIGINT)")
    run.add_argument("--config", required=True, type=Path, help="YAML configuration file")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="route and render every event and log it, but send nothing and keep the real positions untouched",
    )
    run.add_argument(
        "--starting-position",
        choices=["TRIM_HORIZON", "LATEST"],
        help="where shards without a checkpoint start (overrides source.starting_position); needed to start an "
        "application whose lease table is gone",
    )
    run.set_defaults(handler=_run)

    check = commands.add_parser("check-config", help="validate a configuration file and summarise it")
    check.add_argument("--config", required=True, type=Path, help="YAML configuration file")
    check.set_defaults(handler=_check_config)

    redrive = commands.add_parser(
        "redrive", help="deliver dead-lettered records again through the route and sink that refused them"
    )
    redrive.add_argument("--config", required=True, type=Path, help="YAML configuration file")
    redrive.add_argument("--from", dest="source", required=True, help="file:PATH, sqs:QUEUE_URL or s3://BUCKET/PREFIX")
    redrive.set_defaults(handler=_redrive)

    status = commands.add_parser("status", help="show the application's shard leases, owners, checkpoints and lag")
    status.add_argument("--config", required=True, type=Path, help="YAML configuration file")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--no-lag", action="store_true", help="read only the lease table, not the stream")
    status.set_defaults(handler=_status)

    esm = commands.add_parser(
        "import-esm",
        help="print a configuration (YAML) doing what a Lambda event source mapping does, from the JSON of "
        "`aws lambda get-event-source-mapping` or `list-event-source-mappings`",
    )
    esm.add_argument("file", metavar="FILE", help="the AWS CLI's JSON output, or - for standard input")
    esm.add_argument("--uuid", help="the mapping to import when FILE lists several")
    esm.set_defaults(handler=_import_esm)

    demo = commands.add_parser("demo", help="run the products example on a local moto endpoint")
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the endpoint and the consumer up after the three notifications",
    )
    demo.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the notifications")
    demo.add_argument("--endpoint-url", help="use this moto endpoint instead of starting one")
    demo.set_defaults(handler=_demo)
    return parser


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.dry_run:
        config = config.model_copy(update={"dry_run": True})
    if args.starting_position:
        source = config.source.model_copy(update={"starting_position": StartingPosition(args.starting_position)})
        config = config.model_copy(update={"source": source})
    configure_logging(config.log_level, redact=config.log_redact)
    # The supervisor's own metrics live in memory; the directory is for its children, and it picks its own.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from consumer import supervisor  # noqa: PLC0415 - keeps check-config free of the engine's imports

    return supervisor.run(config, position_chosen=args.starting_position is not None)


def _redrive(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging(config.log_level, redact=config.log_redact)
    from consumer.redrive import redrive  # noqa: PLC0415

    outcome = redrive(config, args.source)
    sys.stdout.write(f"redriven: {outcome.delivered} delivered, {outcome.kept} kept in {args.source}\n")
    return 0 if outcome.kept == 0 else 1


def _status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging(config.log_level, redact=config.log_redact)
    from consumer.status import read_status  # noqa: PLC0415

    status = read_status(config, with_lag=not args.no_lag)
    sys.stdout.write((status.as_json() if args.json else status.as_table()) + "\n")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    from consumer.preflight import build_sinks_once  # noqa: PLC0415 - loads the configured sinks' modules

    try:
        # Without the handlers: importing one runs its module's code, which may need the network or credentials.
        build_sinks_once(config, config.source.stream_arn, handlers=False)
    except StartupError as error:
        raise ConfigError([ConfigProblem("", str(error))], str(args.config)) from error
    sys.stdout.write(summary(config) + "\n")
    from consumer.deadletter import destination_warnings  # noqa: PLC0415

    warnings = [*config.filter_warnings(), *destination_warnings(config)]
    sys.stderr.writelines(f"consumer: warning: {warning}\n" for warning in warnings)
    return 0


def _import_esm(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from consumer.esm import import_esm  # noqa: PLC0415

    source = "standard input" if args.file == "-" else args.file
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        document = json.loads(text)
    except OSError as error:
        raise ImportRefusedError(f"cannot read {source}: {error.strerror or error}") from error
    except ValueError as error:
        raise ImportRefusedError(f"{source} is not JSON: {error}") from error
    sys.stdout.write(import_esm(document, uuid=args.uuid, source=source))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from consumer import demo  # noqa: PLC0415

    return demo.run_demo(keep_running=args.keep_running, timeout_seconds=args.timeout, endpoint_url=args.endpoint_url)


def summary(config: Config) -> str:
    source = config.source
    stream = source.stream_arn or f"latest stream of table {source.table_name}"
    sinks = ", ".join(f"{sink.name} ({sink.type})" for sink in config.sinks)
    routes = (
        "; ".join(f"{r.name} -> {', '.join(r.sinks)} ({r.format})" for r in config.routes)
        + (f"; unmatched -> {config.unmatched}" if config.routes else "")
        or "none: every event to every sink (plain)"
    )
    lines = [
        "configuration OK",
        f"  application:  {config.application_name} (lease table {config.application_name})",
        f"  stream:       {stream}",
        f"  region:       {source.region}" + (f" via {source.endpoint_url}" if source.endpoint_url else ""),
        (
            f"  start:        {source.starting_position.value}, up to {source.max_records} records per read, "
            f"every {source.poll_interval_ms} ms"
        ),
        f"  batches:      up to {source.batch_size} records"
        + (
            f", gathered for up to {source.maximum_batching_window_seconds} s"
            if source.maximum_batching_window_seconds
            else ""
        ),
        f"  sinks:        {sinks}",
        f"  routes:       {routes}",
        f"  shutdown:     {config.shutdown_grace_seconds:g} s grace",
    ]
    return "\n".join(lines)
