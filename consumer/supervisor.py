"""`consumer run`: check the environment, render the KCL properties, run the JVM bridge, forward signals.

The JVM starts one `python -m consumer.processor` child per shard lease. Signals go to the JVM only (it is
started in its own process group); its shutdown hook asks every child to checkpoint and stop.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import structlog
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from consumer.aws import check_position_kept, delete_tables, latest_stream_arn, plan_stream, resolve_stream_arn
from consumer.config import SERVICE_KCL_PROPERTIES, Config, HandlerSinkConfig, SourceConfig, StartingPosition
from consumer.deadletter import check_destination
from consumer.environment import CHILDREN_DIR_ENV, EXIT_TRIMMED, RESOLVED_CONFIG_ENV, STOP_FILE_ENV
from consumer.errors import StartupError
from consumer.events import table_of
from consumer.health import ChildWatch
from consumer.metrics import SupervisorMetrics
from consumer.preflight import build_sinks_once
from consumer.server import HealthServer, HealthState
from consumer.streamswitch import Plan

log = structlog.get_logger("consumer.supervisor")

KCL_DIR = Path(__file__).resolve().parent / "kcl"
DEFAULT_JARS_DIR = KCL_DIR / "jars"
BRIDGE_JAR = "streams-bridge.jar"
BRIDGE_CLASS = "StreamsBridge"
_REQUIRED_JARS = {
    "amazon-kinesis-client-multilang": re.compile(r"^amazon-kinesis-client-multilang-\d.*\.jar$"),
    "amazon-kinesis-client": re.compile(r"^amazon-kinesis-client-\d.*\.jar$"),
    "dynamodb-streams-kinesis-adapter": re.compile(r"^dynamodb-streams-kinesis-adapter-\d.*\.jar$"),
    BRIDGE_JAR: re.compile(rf"^{re.escape(BRIDGE_JAR)}$"),
}
# Beyond the grace the JVM halts itself; this backstop only covers a JVM that cannot even do that.
_KILL_BACKSTOP_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class Engine:
    java: str
    jars_dir: Path


def find_engine(config: Config, environ: Mapping[str, str] | None = None) -> Engine:
    environ = os.environ if environ is None else environ
    java = config.engine.java
    if java is None:
        java_home = environ.get("JAVA_HOME")
        candidate = Path(java_home) / "bin" / "java" if java_home else None
        java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    elif not (Path(java).is_file() or shutil.which(java)):
        raise StartupError(f"engine.java: {java} not found")
    if not java:
        raise StartupError("Java not found: install a Java 17+ runtime, or set JAVA_HOME or engine.java")
    jars_dir = config.engine.jars_dir or DEFAULT_JARS_DIR
    names = [p.name for p in jars_dir.glob("*.jar")] if jars_dir.is_dir() else []
    missing = [jar for jar, pattern in _REQUIRED_JARS.items() if not any(pattern.match(n) for n in names)]
    if missing:
        raise StartupError(f"KCL jars missing in {jars_dir} ({', '.join(missing)}): run `make jars`")
    return Engine(java=java, jars_dir=jars_dir)


def _check_handlers(config: Config) -> None:
    # Loaded once now, in a throwaway worker process, so that a typo in a handler path is one clear line at start,
    # not a failed invocation per batch later; never in this process, which would run the module's code.
    from consumer.sinks.handler import check_handler  # noqa: PLC0415

    for sink in config.sinks:
        if isinstance(sink, HandlerSinkConfig):
            check_handler(sink)


def render_properties(
    config: Config,
    stream_arn: str,
    worker_id: str,
    python: str,
    *,
    engine_state_file: Path | None = None,
    trimmed_gaps_file: Path | None = None,
    starting_position: StartingPosition | None = None,
    shard_sync_at_start: bool = False,
) -> str:
    """`starting_position` overrides the configured one (a stream switch reads the next stream from its start)."""
    source = config.source
    values: dict[str, object] = {
        "executableName": f"{python} -m consumer.processor",
        "processingLanguage": f"python/{sys.version_info.major}.{sys.version_info.minor}",
        "applicationName": config.application_name,
        # multilang insists on a stream name; the bridge reads dynamoDbStreamArn (streamArn must be a Kinesis ARN).
        "streamName": stream_arn,
        "dynamoDbStreamArn": stream_arn,
        "regionName": source.region,
        "AwsCredentialsProvider": "DefaultCredentialsProvider",
        "initialPositionInStream": (starting_position or source.starting_position).value,
        "maxRecords": source.max_records,
        "idleTimeBetweenReadsInMillis": source.poll_interval_ms,
        "shutdownGraceMillis": int(config.shutdown_grace_seconds * 1000),
        "workerId": worker_id,
        "streamsMaxAttempts": config.engine.streams_max_attempts,
        "leaderLockMillis": int(config.engine.leader_lock_seconds * 1000),
        # KCL's CloudWatch metrics cost money and need IAM rights; this service exports its own.
        "metricsLevel": "NONE",
        # Idle polls reach the children too, so their lag and behind-latest gauges fall to 0 when caught up.
        "callProcessRecordsEvenForEmptyRecordList": True,
        "onTrimmed": source.on_trimmed.value,
        "shardSyncAtStart": shard_sync_at_start,
    }
    if engine_state_file is not None:
        values["engineStateFile"] = str(engine_state_file)
    if trimmed_gaps_file is not None:
        values["trimmedGapsFile"] = str(trimmed_gaps_file)
    if config.engine.processing_timeout_seconds is not None:
        values["timeoutInSeconds"] = config.engine.processing_timeout_seconds
    if source.endpoint_url:
        for key in ("dynamoDBEndpoint", "dynamoDBStreamsEndpoint", "cloudWatchEndpoint"):
            values[key] = source.endpoint_url
    overrides = dict(config.engine.kcl_properties)
    # The config model refuses these already; a Config built around it (model_copy) must not slip one through.
    clashes = sorted(SERVICE_KCL_PROPERTIES & overrides.keys())
    if clashes:
        raise StartupError(f"engine.kcl_properties: set by the service, not here: {', '.join(clashes)}")
    values.update(overrides)
    lines = ["# Rendered by `consumer run`; do not edit."]
    lines += [f"{_escape(key)} = {_escape(_format(value))}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _format(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _escape(text: str) -> str:
    # java.util.Properties reads ISO-8859-1, treats backslash as an escape and a newline as the end of a value.
    escaped = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return "".join(c if c.isascii() else f"\\u{ord(c):04x}" for c in escaped)


def default_worker_id() -> str:
    # The hostname is the pod or task name in a container; the suffix keeps a restarted container with the same
    # name from being taken for the worker that died.
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


def run(config: Config, *, position_chosen: bool = False) -> int:
    """Start the engine and block until it exits; returns the JVM's exit status.

    `position_chosen`: the operator set the starting position on the command line, for an application whose
    positions are lost (its lease table is gone); without it such a start is refused.
    """
    engine = find_engine(config)
    python = sys.executable
    if " " in python:
        raise StartupError(f"the Python path {python!r} contains a space, which the KCL cannot pass to a child")
    _check_handlers(config)
    check_destination(config)
    stream_arn = resolve_stream_arn(config.source)
    build_sinks_once(config, stream_arn, handlers=False)  # the handlers were loaded just above
    worker_id = config.engine.worker_id or default_worker_id()
    if config.dry_run:
        config = dry_run_configuration(config)
    elif not position_chosen:
        check_position_kept(config.source, config.application_name)
    plan = _plan_at_start(config, stream_arn)
    workdir = Path(tempfile.mkdtemp(prefix="consumer-"))
    try:
        # A fresh directory at every start: values of a previous run's processes never mix into /metrics.
        metrics_dir = workdir / "metrics"
        children_dir = workdir / "children"
        metrics_dir.mkdir()
        children_dir.mkdir()
        engine_state = workdir / "engine-state"
        trimmed_gaps = workdir / "trimmed-gaps.jsonl"
        properties = workdir / "kcl.properties"
        resolved_path = workdir / "config.json"

        def prepare(plan: Plan) -> None:
            # The children label their records with the stream they read (eventSourceARN): the plan's, not the
            # table's latest.
            source = config.source.model_copy(update={"stream_arn": plan.stream_arn})
            resolved = config.model_copy(update={"source": source})
            rendered = render_properties(
                resolved,
                plan.stream_arn,
                worker_id,
                python,
                engine_state_file=engine_state,
                trimmed_gaps_file=trimmed_gaps,
                starting_position=plan.position,
                shard_sync_at_start=plan.shard_sync_at_start,
            )
            properties.write_text(rendered, encoding="utf-8")
            resolved_path.write_text(resolved.model_dump_json(), encoding="utf-8")
            # A previous engine's last report must not make the next one look started (or ready).
            engine_state.unlink(missing_ok=True)
            log.info(
                "starting engine",
                application=config.application_name,
                stream_arn=plan.stream_arn,
                worker_id=worker_id,
                starting_position=(plan.position or config.source.starting_position).value,
                on_trimmed=config.source.on_trimmed.value,
            )

        prepare(plan)
        command = [
            engine.java,
            *config.engine.jvm_options,
            f"-Dlogback.configurationFile={KCL_DIR / 'logback.xml'}",
            f"-Dconsumer.kcl.logLevel={config.engine.log_level}",
            f"-Dconsumer.log.console={'true' if sys.stderr.isatty() else 'false'}",
            "-cp",
            f"{engine.jars_dir}{os.sep}*",
            BRIDGE_CLASS,
            str(properties),
        ]
        stop_file = workdir / "stopping"
        env = {
            **os.environ,
            RESOLVED_CONFIG_ENV: str(resolved_path),
            STOP_FILE_ENV: str(stop_file),
            CHILDREN_DIR_ENV: str(children_dir),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "PYTHONUNBUFFERED": "1",
        }
        if config.source.region:
            env.setdefault("AWS_REGION", config.source.region)
        observer = Observer(
            config, table_of(stream_arn), metrics_dir, children_dir, engine_state, trimmed_gaps=trimmed_gaps
        )
        watch = None
        if config.source.stream_arn is None:  # a stream named in the configuration is read as it is, alone
            watch = StreamWatch(config.source, config.application_name, plan.stream_arn, stream_arn, prepare)
        return _run_jvm(command, env, config.shutdown_grace_seconds, stop_file, observer, watch=watch)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if config.dry_run:
            _delete_kcl_tables(config)


def _plan_at_start(config: Config, stream_arn: str) -> Plan:
    if config.source.stream_arn is not None:
        return Plan(stream_arn, None, "the configured stream")
    try:
        plan = plan_stream(config.source, config.application_name, stream_arn)
    except (ClientError, BotoCoreError) as error:
        raise StartupError(
            f"cannot read the lease table {config.application_name!r} or the streams of the table: {error}"
        ) from None
    if plan.stream_arn != stream_arn or plan.position is not None:
        log.warning(
            plan.reason,
            stream_arn=plan.stream_arn,
            table_stream_arn=stream_arn,
            starting_position=(plan.position or config.source.starting_position).value,
        )
    return plan


class StreamWatch:
    """Notices a table whose stream was disabled and enabled again, and says when to move to the next stream.

    Every `source.stream_check_seconds` it asks the table for its latest stream (DescribeTable). While that is not
    the stream being read, it surveys the lease table and the table's streams and applies streamswitch.plan_start:
    the engine keeps reading until the old stream is drained, then `poll` returns the plan for the next one.
    """

    def __init__(  # noqa: PLR0917 - each is needed, and named at the one call
        self,
        source: SourceConfig,
        application: str,
        reading: str,
        latest: str,
        prepare: Callable[[Plan], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._application = application
        self.reading = reading
        self.prepare = prepare
        self._clock = clock
        self._next_check = clock() + source.stream_check_seconds
        # The newer stream the table has while an older one is read: the worker is not ready meanwhile.
        self.behind: str | None = latest if latest != reading else None
        self._refused: str | None = None

    def poll(self) -> Plan | None:
        now = self._clock()
        if now < self._next_check:
            return None
        self._next_check = now + self._source.stream_check_seconds
        try:
            latest = latest_stream_arn(self._source)
            if latest is None or latest == self.reading:
                self.behind = None
                return None
            if self.behind != latest:
                log.warning(
                    "the table has a newer stream: reading the old one to its end before moving on",
                    stream_arn=self.reading,
                    latest_stream_arn=latest,
                )
                self.behind = latest
            plan = plan_stream(self._source, self._application, latest, reading=self.reading)
        except (ClientError, BotoCoreError) as error:
            log.warning("cannot check the table's stream; checking again later", error=str(error))
            return None
        except StartupError as error:
            if self._refused != str(error):
                log.error("cannot move to the table's new stream", error=str(error))
                self._refused = str(error)
            return None
        return None if plan.stream_arn == self.reading else plan

    def moved_to(self, plan: Plan) -> None:
        self.reading = plan.stream_arn
        if self.behind == plan.stream_arn:
            self.behind = None


DRY_RUN_MARKER = "-dryrun-"
KCL_TABLE_SUFFIXES = ("", "-CoordinatorState", "-WorkerMetricStats")


def dry_run_configuration(config: Config) -> Config:
    """The configuration a dry run really runs: its own throw-away KCL tables and no on-failure destination.

    Under the real application name a dry run would move the production checkpoints past records it only logged
    (and take leases from the running workers); so it keeps its positions in tables of its own, deleted when it
    stops. It sends nothing anywhere, dead letters included: what would be dead-lettered is logged.
    """
    suffix = uuid.uuid4().hex[:8]
    application = f"{config.application_name[: 200 - len(DRY_RUN_MARKER) - len(suffix)]}{DRY_RUN_MARKER}{suffix}"
    log.info(
        "dry run: sinks and destinations receive nothing; positions are kept in throw-away tables, deleted at exit",
        real_application=config.application_name,
        dry_run_application=application,
    )
    return config.model_copy(update={"application_name": application, "on_failure": None})


def _delete_kcl_tables(config: Config) -> None:
    delete_tables(config.source, [config.application_name + suffix for suffix in KCL_TABLE_SUFFIXES])


class Observer:
    """Serves /metrics, /healthz and /readyz, and keeps what they report current from the supervisor's loop."""

    def __init__(
        self,
        config: Config,
        table: str,
        metrics_dir: Path,
        children_dir: Path,
        engine_state: Path,
        *,
        trimmed_gaps: Path | None = None,
    ) -> None:
        self._config = config
        self._metrics_dir = metrics_dir
        self._engine_state = engine_state
        self._trimmed_gaps = TrimmedGaps(trimmed_gaps) if trimmed_gaps is not None else None
        self.registry = CollectorRegistry()
        MultiProcessCollector(self.registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
        # The children label their metrics with the table of the stream ARN (StreamContext.table): the same here.
        self.metrics = SupervisorMetrics(self.registry, table)
        self.state = HealthState()
        self._children = ChildWatch(children_dir, config.http.stuck_batch_seconds)
        self._server: HealthServer | None = None
        self._engine_started = 0.0
        self._http_port: int | None = None
        self.stopping = False
        # Reading an older stream while the table has a newer one: a write made now would not be delivered soon.
        self.switching = False
        self.last_trimmed_gap: dict[str, object] = {}

    def start(self) -> None:
        """Called once the JVM runs (the server's thread must not exist while the JVM is forked)."""
        self._engine_started = time.time()
        self.metrics.engine_up.set(1)
        http = self._config.http
        if not http.enabled:
            return
        try:
            self._server = HealthServer(http.host, http.port, self.registry, self.state).start()
        except OSError as error:
            raise StartupError(f"http.port: cannot listen on {http.host}:{http.port}: {error.strerror}") from error
        self._http_port = self._server.port
        log.info("http endpoints", url=f"http://{http.host}:{self._server.port}", paths="/metrics /healthz /readyz")

    def engine_restarted(self) -> None:
        self._engine_started = time.time()

    def pause_http(self) -> None:
        """Stop serving while the next JVM is forked (its pre-exec hook must not run beside another thread)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def resume_http(self) -> None:
        if self._http_port is None or self._server is not None:
            return
        try:
            self._server = HealthServer(self._config.http.host, self._http_port, self.registry, self.state).start()
        except OSError as error:
            log.error("cannot listen again after the engine restarted", port=self._http_port, error=error.strerror)

    def tick(self, engine_running: bool) -> None:
        survey = self._children.survey()
        table = self.metrics.table
        if survey.started:
            self.metrics.child_starts.labels(table).inc(len(survey.started))
        if survey.crashed:
            self.metrics.child_crashes.labels(table).inc(len(survey.crashed))
            log.error("record-processor child ended abnormally", pids=list(survey.crashed))
        for pid in survey.gone:
            mark_process_dead(pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]
        if self._trimmed_gaps is not None:
            gaps = self._trimmed_gaps.read_new()
            if gaps:
                self.metrics.trimmed_gaps.labels(table).inc(len(gaps))
                self.last_trimmed_gap = gaps[-1]
        scheduler, reported, positioned = _engine_state(self._engine_state)
        now = time.time()
        unresponsive = self._config.http.engine_unresponsive_seconds
        if not engine_running:
            engine = "stopped"
        elif reported is None:
            engine = "starting" if now - self._engine_started < unresponsive else "unresponsive"
        else:
            engine = "running" if now - reported < unresponsive else "unresponsive"
        stuck = [{"pid": pid, "busy_seconds": round(seconds, 1)} for pid, seconds in survey.stuck]
        if stuck and not self.state.stuck:
            log.error("a record-processor child is stuck on one batch", children=stuck)
        # Ready means a write made now will be delivered: every shard's position is fixed (see the bridge).
        ready = engine == "running" and scheduler == "STARTED" and positioned and not self.stopping
        ready = ready and not self.switching
        self.state.engine, self.state.scheduler, self.state.stuck, self.state.ready = engine, scheduler, stuck, ready
        self.metrics.engine_up.set(1 if engine_running else 0)
        self.metrics.ready.set(1 if ready else 0)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


_GAP_FIELDS = ("shard_id", "checkpoint_sequence_number", "oldest_available_sequence_number")


class TrimmedGaps:
    """The gaps the bridge appends to its file, one JSON line each (the bridge logs each one itself).

    Reads only whole lines, from where the last read ended: the bridge may be writing the next one.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0

    def read_new(self) -> list[dict[str, object]]:
        try:
            with self._path.open("rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        gaps = []
        for line in complete.splitlines():
            try:
                gap = json.loads(line)
            except ValueError:
                log.warning("unreadable line in the trimmed gaps file", line=line.decode("utf-8", "replace"))
                gap = {}
            gaps.append(gap if isinstance(gap, dict) else {})
        return gaps


def _start_observer(observer: Observer, jvm: subprocess.Popen[bytes]) -> None:
    try:
        observer.start()
    except StartupError:
        os.killpg(jvm.pid, signal.SIGKILL)
        jvm.wait()
        raise


def _engine_state(path: Path) -> tuple[str, float | None, bool]:
    """The KCL worker state the bridge last wrote, when (epoch seconds), and whether every position is fixed.

    ("CREATED", None, False) before the first report.
    """
    try:
        state, millis, *flags = path.read_text(encoding="ascii").split()
        return state, int(millis) / 1000, "positioned" in flags
    except (OSError, ValueError):
        return "CREATED", None, False


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    try:
        # preexec_fn is unsafe only with threads running: the supervisor has none while it forks (the HTTP server
        # is paused around a restart).
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
    except OSError as error:
        raise StartupError(f"cannot start Java ({command[0]}): {error.strerror}") from error


def _run_jvm(
    command: list[str],
    env: dict[str, str],
    grace_seconds: float,
    stop_file: Path,
    observer: Observer,
    *,
    watch: StreamWatch | None = None,
) -> int:
    return _EngineLoop(command, env, grace_seconds, stop_file, observer, watch).run()


class _EngineLoop:
    """Runs the JVM until it exits, forwarding stop signals to it; between two engines, the stream switch."""

    def __init__(  # noqa: PLR0917 - what _run_jvm was given, kept together
        self,
        command: list[str],
        env: dict[str, str],
        grace_seconds: float,
        stop_file: Path,
        observer: Observer,
        watch: StreamWatch | None,
    ) -> None:
        self.command, self.env, self.grace_seconds = command, env, grace_seconds
        self.stop_file, self.observer, self.watch = stop_file, observer, watch
        self.jvm: subprocess.Popen[bytes] | None = None
        self.pending: list[int] = []
        self.stop_deadline: float | None = None

    def forward(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + self.grace_seconds + _KILL_BACKSTOP_SECONDS
            self.stop_file.touch()  # children waiting to retry a delivery give up their batch instead of the grace
            self.observer.stopping = True  # not ready from now on: no new traffic is worth routing here
            log.info(
                "stopping: signal forwarded to the engine",
                signal=signal.Signals(signum).name,
                grace_seconds=self.grace_seconds,
            )
        if self.jvm is None:
            self.pending.append(signum)  # arrived while the JVM was being started
        else:
            self.jvm.send_signal(signum)

    def start(self, *, first: bool) -> subprocess.Popen[bytes]:
        self.jvm = None
        if not first:
            self.observer.pause_http()
        try:
            started = _spawn(self.command, self.env)
        finally:
            if not first:
                self.observer.resume_http()
        self.jvm = started
        for signum in self.pending:
            started.send_signal(signum)
        self.pending.clear()
        return started

    def run(self) -> int:
        # Installed before the JVM starts: a SIGTERM in between would otherwise kill the supervisor, and with it
        # (PDEATHSIG) the JVM, before any checkpoint.
        previous = {sig: signal.signal(sig, self.forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            running = self.start(first=True)
            _start_observer(self.observer, running)
            status = self.supervise(running)
            self.observer.tick(engine_running=False)
        finally:
            self.observer.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if status < 0:
            status = 128 - status  # killed by a signal: report it the way a shell would
        _log_exit(status, self.observer.last_trimmed_gap)
        return status

    def supervise(self, running: subprocess.Popen[bytes]) -> int:
        while True:
            try:
                return running.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            # Polled before the tick: readiness falls with the very check that notices a newer stream.
            plan = self.watch.poll() if self.watch is not None and self.stop_deadline is None else None
            self.observer.switching = self.watch is not None and self.watch.behind is not None
            self.observer.tick(engine_running=True)
            if self.stop_deadline is not None:
                if time.monotonic() > self.stop_deadline:
                    log.error("engine did not stop within the grace period; killing it and its children")
                    os.killpg(running.pid, signal.SIGKILL)
                continue
            if plan is None or self.watch is None:
                continue
            status = _stop_for_switch(running, self.grace_seconds, self.observer)
            if status != 0 or self.stop_deadline is not None:
                return status
            _log_switch(self.watch.reading, plan, self.observer)
            self.watch.moved_to(plan)
            self.watch.prepare(plan)
            running = self.start(first=False)
            self.observer.engine_restarted()


def _stop_for_switch(jvm: subprocess.Popen[bytes], grace_seconds: float, observer: Observer) -> int:
    """Stop the engine on the drained stream as a SIGTERM would, without the stop file: its children have ended
    their shards, and nothing they hold is given up."""
    observer.switching = True
    jvm.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds + _KILL_BACKSTOP_SECONDS
    while True:
        try:
            status = jvm.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            observer.tick(engine_running=True)
            if time.monotonic() > deadline:
                log.error("engine did not stop within the grace period for the stream switch; killing it")
                os.killpg(jvm.pid, signal.SIGKILL)
            continue
        if status != 0:
            log.error("engine stopped abnormally while moving to the next stream", status=status)
        return status


def _log_switch(previous: str, plan: Plan, observer: Observer) -> None:
    observer.metrics.stream_switches.labels(observer.metrics.table).inc()
    log.warning(
        "stream switch: the old stream is read to its end; reading the next one from its start",
        previous_stream_arn=previous,
        stream_arn=plan.stream_arn,
        starting_position=(plan.position or StartingPosition.TRIM_HORIZON).value,
    )


def _log_exit(status: int, trimmed_gap: Mapping[str, object]) -> None:
    if status == 0:
        log.info("engine stopped")
    elif status == EXIT_TRIMMED:
        # The last line an operator sees of a worker that will stop again at every restart: it says what to do.
        log.error(
            "engine stopped: records were trimmed from the stream before they were read (source.on_trimmed: fail); "
            "the checkpoint was not moved, and a restart meets the same gap: set source.on_trimmed: continue "
            "to accept it",
            status=status,
            **{key: trimmed_gap[key] for key in _GAP_FIELDS if key in trimmed_gap},
        )
    else:
        log.error("engine exited", status=status)


def _die_with_parent() -> None:
    # If the supervisor is killed outright, take the JVM (and so its children) with it rather than leave a
    # worker nobody supervises holding leases.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
