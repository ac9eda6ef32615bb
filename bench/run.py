"""`make bench`: drain, latency and Python-stage benchmarks in one run, on a local moto endpoint.

    python -m bench.run [--smoke] [--records N] [--rates 200,1000] [--out DIR]

Writes DIR/results.json (and DIR/stages-benchmark.json, pytest-benchmark's own); bench/report.py turns it into
BENCHMARKS.md and plots. Nothing is asserted: the goals are reported, not enforced.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psutil

from bench import engine, history, latency, profile, stages, timed_moto
from bench.workload import prefill
from consumer.local import LOCAL_CREDENTIALS, LOCAL_REGION, MotoServer, create_streamed_table
from consumer.supervisor import DEFAULT_JARS_DIR

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plan:
    smoke: bool
    records: int
    rates: list[float]
    latency_seconds: float
    poll_interval_ms: int
    drain_poll_interval_ms: int
    drain_rounds: int
    profile_records: int
    parts: frozenset[str]
    out: Path


PARTS = frozenset({"stages", "drain", "latency", "profile"})
# The second latency run: what a user who wants seconds-level latency would set (README, "Performance").
TUNED_POLL_INTERVAL_MS = 250
TUNED_PARALLELIZATION = 4


def parse(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="small N and short phases: checks the harness works")
    parser.add_argument("--records", type=int, help="records pre-filled and drained (default 50000; smoke 2000)")
    parser.add_argument("--rates", help="writes/s of the latency phases, comma-separated (default 200,1000)")
    parser.add_argument("--latency-seconds", type=float, help="length of each latency phase (default 20; smoke 5)")
    parser.add_argument("--poll-interval-ms", type=int, default=1000, help="source.poll_interval_ms (latency)")
    parser.add_argument(
        "--drain-poll-interval-ms",
        type=int,
        default=200,
        help="source.poll_interval_ms of the drains (default 200: the KCL waits it after every read, even a full one)",
    )
    parser.add_argument(
        "--drain-rounds", type=int, help="drains of the service and the Java reference each (default 3; smoke 1)"
    )
    parser.add_argument("--profile-records", type=int, help="records of the profiled drain (default 20000)")
    parser.add_argument("--only", help=f"comma-separated parts to run, of {','.join(sorted(PARTS))}")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    parts = frozenset(args.only.split(",")) if args.only else PARTS - ({"profile"} if args.smoke else set())
    if parts - PARTS:
        parser.error(f"unknown parts: {', '.join(sorted(parts - PARTS))}")
    rates = [float(r) for r in args.rates.split(",")] if args.rates else ([100.0] if args.smoke else [200.0, 1000.0])
    return Plan(
        smoke=args.smoke,
        records=args.records or (2000 if args.smoke else 50_000),
        rates=rates,
        latency_seconds=args.latency_seconds or (5.0 if args.smoke else 20.0),
        poll_interval_ms=args.poll_interval_ms,
        drain_poll_interval_ms=args.drain_poll_interval_ms,
        drain_rounds=args.drain_rounds or (1 if args.smoke else 3),
        profile_records=args.profile_records or (2000 if args.smoke else 20_000),
        parts=parts,
        out=args.out,
    )


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)  # noqa: S607
    jars = sorted(p.name for p in DEFAULT_JARS_DIR.glob("*.jar") if "kinesis" in p.name or "streams" in p.name)
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "java": (java.stderr.splitlines() or ["unknown"])[0],
        "moto": importlib.metadata.version("moto"),
        "kcl_jars": jars,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def run_stages(plan: Plan) -> dict[str, Any]:
    target = plan.out / "stages-benchmark.json"
    quick = ["--benchmark-max-time=0.1", "--benchmark-min-rounds=20"] if plan.smoke else []
    command = [sys.executable, "-m", "pytest", "-m", "bench", "tests/bench", "-q", "-p", "no:cacheprovider"]
    subprocess.run([*command, f"--benchmark-json={target}", *quick], cwd=ROOT, check=True)
    raw = json.loads(target.read_text(encoding="utf-8"))
    results = {
        b["name"].removeprefix("test_"): {
            "median_us": round(b["stats"]["median"] * 1e6, 2),
            "mean_us": round(b["stats"]["mean"] * 1e6, 2),
            "min_us": round(b["stats"]["min"] * 1e6, 2),
            "rounds": b["stats"]["rounds"],
        }
        for b in raw["benchmarks"]
    }
    data = stages.adapter_record()
    iterations = 2000 if plan.smoke else 20_000
    profiles = {
        f"profile_{kind}_route": stages.profile(stages.stage(stages.router(kind)), data, iterations)
        for kind in stages.ROUTES
    }
    return {"record_bytes": len(data), "benchmarks": results, **profiles}


def commit() -> str | None:
    """The code measured: the commit, marked when files other than the results differ from it."""
    git = shutil.which("git")
    if git is None:
        return None
    head = subprocess.run([git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False)
    if head.returncode:
        return None
    status = subprocess.run([git, "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT, check=False)
    changed = [line for line in status.stdout.splitlines() if "bench/results/" not in line and "BENCHMARKS" not in line]
    return head.stdout.strip() + ("+changes" if changed else "")


def moto_pid() -> tuple[int, ...]:
    for child in psutil.Process().children():
        if "moto" in " ".join(child.cmdline()):  # moto.server, or bench.timed_moto around it
            return (child.pid,)
    return ()


def main(argv: list[str] | None = None) -> int:  # noqa: C901, PLR0912, PLR0915 - one step after the other, as the report reads
    plan = parse(argv)
    plan.out.mkdir(parents=True, exist_ok=True)
    if plan.smoke:
        engine.IDLE_SECONDS = 2.0
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ["AWS_REGION"] = LOCAL_REGION
    os.environ.pop("AWS_ENDPOINT_URL", None)
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": "smoke" if plan.smoke else "full",
        "commit": commit(),
        "machine": machine(),
        "settings": {
            "records": plan.records,
            "rates": plan.rates,
            "latency_seconds": plan.latency_seconds,
            "poll_interval_ms": plan.poll_interval_ms,
            "drain_poll_interval_ms": plan.drain_poll_interval_ms,
            "max_records": 1000,
            "kcl_properties": engine.FAST_KCL,
        },
    }
    results_path = plan.out / "results.json"

    def save() -> None:
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        results_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    if "stages" in plan.parts:
        step("Python stage micro-benchmark")
        results["stages"] = run_stages(plan)
        save()
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        # moto wrapped so that it notes each GetRecords' start and end: the latency splits at the read.
        get_records_log = workdir / "get-records.txt"
        os.environ[timed_moto.LOG_ENV] = str(get_records_log)
        with MotoServer(log_path=workdir / "moto.log", module="bench.timed_moto") as moto:
            watch = moto_pid()
            dynamodb: Any = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=moto.url)
            streams: Any = boto3.client("dynamodbstreams", region_name=LOCAL_REGION, endpoint_url=moto.url)
            if "drain" in plan.parts or "profile" in plan.parts:
                step(f"pre-fill {plan.records} records")
                table = engine.unique("bench")
                stream_arn = create_streamed_table(dynamodb, table)
                filled = prefill(dynamodb, table, plan.records)
                results["prefill"] = {
                    "records": filled.records,
                    "seconds": round(filled.seconds, 2),
                    "writes_per_second": round(filled.rate, 1),
                    "mix": filled.counts,
                    "mean_item_bytes": round(filled.mean_item_bytes),
                    "method": "BatchWriteItem, 25 per call, one thread",
                }
                say(f"  {filled.records} records in {filled.seconds:.1f} s ({filled.rate:.0f}/s)")
                save()
            if "drain" in plan.parts:
                common: dict[str, Any] = {
                    "dynamodb": dynamodb,
                    "streams": streams,
                    "table": table,
                    "stream_arn": stream_arn,
                    "records": plan.records,
                    "endpoint": moto.url,
                    "watch": watch,
                    "poll_interval_ms": plan.drain_poll_interval_ms,
                }
                drains = []
                step("drain (a): the service, memory sink")
                drains.append(engine.drain_service(workdir=workdir / "a", **common))
                report(drains[-1])
                step("drain (b): the Java reference processor")
                reference = "referenceProcessor = count\n"
                drains.append(engine.drain_engine("java-reference", workdir=workdir / "b", extra=reference, **common))
                report(drains[-1])
                step("drain (c): the boto3 poller")
                drains.append(
                    engine.drain_poller(
                        stream_arn,
                        plan.records,
                        moto.url,
                        workdir / "c",
                        watch=watch,
                        poll_interval_ms=plan.drain_poll_interval_ms,
                    )
                )
                report(drains[-1])
                results["drain"] = [d.as_dict() for d in drains]
                # Further rounds of the two KCL readers, in the other order each time: one drain's CPU moves with
                # moto's speed and the machine, so the ratio is read over rounds (the first round included).
                rounds = [{d.reader: d.as_dict() for d in drains[:2]}]
                for number in range(1, plan.drain_rounds):
                    pair = []
                    for reader in ("java-reference", "service") if number % 2 else ("service", "java-reference"):
                        step(f"drain round {number + 1}: {reader}")
                        where = workdir / f"round{number}-{reader}"
                        if reader == "service":
                            pair.append(engine.drain_service(workdir=where, **common))
                        else:
                            pair.append(engine.drain_engine(reader, workdir=where, extra=reference, **common))
                        report(pair[-1])
                    rounds.append({d.reader: d.as_dict() for d in pair})
                results["drain_rounds"] = rounds
                save()
            if "latency" in plan.parts:
                settings = [latency.Setting(plan.poll_interval_ms, 1, tuple(plan.rates))]
                if not plan.smoke:
                    settings.append(latency.Setting(TUNED_POLL_INTERVAL_MS, TUNED_PARALLELIZATION, (plan.rates[0],)))
                step(
                    "latency: "
                    + "; ".join(
                        f"{', '.join(f'{r:g}' for r in s.rates)} writes/s at poll {s.poll_interval_ms} ms, "
                        f"parallelization {s.parallelization_factor}"
                        for s in settings
                    )
                )

                def latency_table() -> str:
                    name = engine.unique("bench-latency")
                    create_streamed_table(dynamodb, name)
                    return name

                results["latency"] = latency.measure(
                    latency_table,
                    moto.url,
                    workdir / "latency",
                    settings=settings,
                    seconds=plan.latency_seconds,
                    watch=watch,
                    get_records_log=get_records_log,
                )
                for run in results["latency"]["runs"]:
                    for phase in run["phases"]:
                        say(
                            f"  poll {run['poll_interval_ms']} ms: {phase['target_rate']:g}/s -> "
                            f"{phase['achieved_rate']}/s: {phase['latency_ms']}, parts {phase['parts_ms']}"
                        )
                save()
            if "profile" in plan.parts:
                step(f"profile: py-spy on the child, drain of {plan.profile_records} records")
                results["profile"] = run_profile(plan, dynamodb, streams, moto.url, workdir / "profile")
                save()
    finally:
        if os.environ.get("BENCH_KEEP"):
            say(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    save()
    if not plan.smoke and plan.parts == PARTS:
        history.append(plan.out / "history.json", history.summarise(results))
    say(f"\nresults: {results_path}")
    return 0


def run_profile(plan: Plan, dynamodb: Any, streams: Any, endpoint: str, workdir: Path) -> dict[str, Any]:
    table = engine.unique("bench-profile")
    stream_arn = create_streamed_table(dynamodb, table)
    prefill(dynamodb, table, plan.profile_records, seed=13)
    workdir.mkdir(parents=True, exist_ok=True)
    drain = engine.drain_engine(
        "service-profiled",
        dynamodb=dynamodb,
        streams=streams,
        table=table,
        stream_arn=stream_arn,
        records=plan.profile_records,
        endpoint=endpoint,
        workdir=workdir,
        executable=str(profile.wrapper(workdir)),
        poll_interval_ms=plan.drain_poll_interval_ms,
    )
    return {
        "records": plan.profile_records,
        "drain": drain.as_dict(),
        "child": profile.categorise(workdir),
        "note": "py-spy at 200 Hz (non-blocking) on the child; its CPU figures are not comparable to the drains",
    }


def say(text: str, *, flush: bool = True) -> None:
    sys.stdout.write(text + "\n")
    if flush:
        sys.stdout.flush()


def step(title: str) -> None:
    say(f"\n== {title} ==")


def report(drain: engine.Drain) -> None:
    d = drain.as_dict()
    say(
        f"  {d['reader']}: {d['records_in_window']} records in {d['window_seconds']} s = {d['records_per_second']}/s,"
        f" {d['cpu_seconds_per_10k']} CPU s per 10k, rss {d['peak_rss_mib']}, first batch after"
        f" {d['until_first_batch_seconds']} s {d['notes'] or ''}",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
