"""BENCHMARKS.md and its plots from a run's results.json, so the page can be regenerated at any time.

python -m bench.report [--results bench/results] [--markdown BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from bench import history

ROOT = Path(__file__).resolve().parent.parent
TIMES = "\N{MULTIPLICATION SIGN}"
NONE = "\N{EN DASH}"
READERS = {
    "service": "this service (memory sink)",
    "java-reference": "Java reference processor",
    "boto3-poller": "boto3 poller",
}
# CPU that belongs to a reader (moto serves all three and is reported apart).
OWN_ROLES = ("jvm", "child", "supervisor", "poller")
CPU_RATIO_GOAL = 1.5
STAGE_RATIO_GOAL = 3.0
LATENCY_MARGIN_MS = 50.0
CHILD_RSS_GOAL_MIB = 35.0


def _fmt(value: float | None, digits: int = 2) -> str:
    return NONE if value is None else f"{value:,.{digits}f}"


def _verdict(ok: bool | None) -> str:
    return NONE if ok is None else ("met" if ok else "**missed**")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def own_cpu_per_10k(drain: dict[str, Any], roles: tuple[str, ...] = OWN_ROLES) -> float | None:
    return history.cpu_per_10k(drain, roles)


def _drains(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["reader"]: d for d in results.get("drain", [])}


def goals(results: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(goal, measured, against, met) rows."""
    rows: list[tuple[str, str, str, bool | None]] = []
    drains = _drains(results)
    service, reference = drains.get("service"), drains.get("java-reference")
    rounds = history.cpu_rounds(results)
    if len(rounds) > 1:
        ratio = history.mean_ratio(rounds)
        each = ", ".join(f"{ours / theirs:.2f}{TIMES}" for ours, theirs in rounds)
        rows.append(
            (
                f"CPU per record ≤ {CPU_RATIO_GOAL}{TIMES} the Java reference",
                f"{_fmt(ratio)}{TIMES} (JVM + child, mean of {len(rounds)} rounds; per round {each})",
                "alternating drains, same rendered properties",
                None if ratio is None else ratio <= CPU_RATIO_GOAL,
            )
        )
    elif service and reference:
        ratio = _ratio(own_cpu_per_10k(service, ("jvm", "child")), own_cpu_per_10k(reference))
        whole = _ratio(own_cpu_per_10k(service), own_cpu_per_10k(reference))
        rows.append(
            (
                f"CPU per record ≤ {CPU_RATIO_GOAL}{TIMES} the Java reference",
                f"{_fmt(ratio)}{TIMES} (JVM + child); {_fmt(whole)}{TIMES} with the supervisor",
                "same run, same rendered properties",
                None if ratio is None else ratio <= CPU_RATIO_GOAL,
            )
        )
    stage = results.get("stages", {}).get("benchmarks", {})
    if "orjson_loads" in stage:
        for name, label in STAGE_LABELS:
            if name in stage:
                ours, base = stage[name]["median_us"], stage["orjson_loads"]["median_us"]
                ratio = ours / base
                rows.append(
                    (
                        f"Python stage ≤ {STAGE_RATIO_GOAL:g}{TIMES} orjson.loads ({label})",
                        f"{ratio:.1f}{TIMES} ({ours:.0f} µs vs {base:.1f} µs)",
                        "median per record",
                        ratio <= STAGE_RATIO_GOAL,
                    )
                )
    runs = _latency_runs(results)
    for run in runs:
        limit = run["poll_interval_ms"] + LATENCY_MARGIN_MS
        for phase in run["phases"]:
            p99 = phase["latency_ms"].get("p99")
            rows.append(
                (
                    f"p99 write → delivery ≤ poll interval + {LATENCY_MARGIN_MS:g} ms ({limit:g} ms)",
                    f"{_fmt(p99, 0)} ms at {phase['achieved_rate']:g} writes/s",
                    _setting(run),
                    None if p99 is None else p99 <= limit,
                )
            )
            service_part = (phase.get("parts_ms") or {}).get("service", {}).get("p99")
            if service_part is not None:
                rows.append(
                    (
                        f"p99 of the service's own part ≤ {LATENCY_MARGIN_MS:g} ms",
                        f"{_fmt(service_part, 0)} ms at {phase['achieved_rate']:g} writes/s",
                        f"{_setting(run)}; GetRecords end → delivery",
                        service_part <= LATENCY_MARGIN_MS,
                    )
                )
    if runs:
        child = max(max(run.get("peak_rss_mib", {}).get("child", [0.0]) or [0.0]) for run in runs)
        rows.append(
            (
                f"child RSS ≤ {CHILD_RSS_GOAL_MIB:g} MB",
                f"{child:.0f} MiB peak (webhook sink, latency runs)",
                "VmHWM",
                child <= CHILD_RSS_GOAL_MIB,
            )
        )
    if service:
        child = max(service.get("peak_rss_mib", {}).get("child", [0.0]) or [0.0])
        rows.append(
            (
                f"child RSS ≤ {CHILD_RSS_GOAL_MIB:g} MB",
                f"{child:.0f} MiB peak (drain of {service['records']} records, memory sink keeping none)",
                "VmHWM",
                child <= CHILD_RSS_GOAL_MIB,
            )
        )
    return rows


def plot_drain(results: dict[str, Any], path: Path) -> bool:
    drains = results.get("drain") or []
    if not drains:
        return False
    names = [READERS.get(d["reader"], d["reader"]) for d in drains]
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    rate_axes, cpu_axes = figure.subplots(1, 2)
    rates = [d["records_per_second"] for d in drains]
    bars = rate_axes.bar(names, rates, color=["#4c72b0", "#dd8452", "#55a868"][: len(drains)])
    rate_axes.bar_label(bars, fmt="%.0f")
    rate_axes.set_ylim(0, max(rates) * 1.15 or 1)
    rate_axes.set_title(f"Drain of {results['settings']['records']:,} records: throughput")
    rate_axes.set_ylabel("records / s")
    bottom = [0.0] * len(drains)
    colours = ("#4c72b0", "#c44e52", "#8172b3", "#55a868")
    for role, colour in zip(("jvm", "child", "supervisor", "poller"), colours, strict=True):
        values = [d["cpu_seconds_per_10k_by_role"].get(role, 0.0) for d in drains]
        if any(values):
            cpu_axes.bar(names, values, bottom=bottom, label=role, color=colour)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for index, total in enumerate(bottom):
        cpu_axes.annotate(f"{total:.2f}", (index, total), ha="center", va="bottom")
    cpu_axes.set_ylim(0, max(bottom) * 1.15 or 1)
    cpu_axes.set_title("CPU seconds per 10,000 records (moto excluded)")
    cpu_axes.set_ylabel("CPU s / 10k records")
    cpu_axes.legend()
    for axes in (rate_axes, cpu_axes):
        axes.tick_params(axis="x", labelsize=8)
    figure.savefig(path, dpi=110)
    return True


STAGE_LABELS = (
    ("stage_default_route", "no routes: plain format"),
    ("stage_filtered_route", "filtered route, plain format"),
    ("stage_lambda_route", "lambda format"),
)


def _latency_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    lat = results.get("latency") or {}
    return list(lat.get("runs") or ([lat] if lat.get("phases") else []))


def _setting(run: dict[str, Any]) -> str:
    return f"poll interval {run['poll_interval_ms']} ms, parallelization {run.get('parallelization_factor', 1)}"


def plot_latency(results: dict[str, Any], path: Path) -> bool:
    runs = _latency_runs(results)
    if not any(p["cdf_ms"] for run in runs for p in run["phases"]):
        return False
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.subplots()
    for run in runs:
        for phase in run["phases"]:
            cdf = phase["cdf_ms"]
            if cdf:
                quantiles = [i / (len(cdf) - 1) for i in range(len(cdf))]
                label = (
                    f"{phase['achieved_rate']:g} writes/s (target {phase['target_rate']:g}), "
                    f"poll {run['poll_interval_ms']} ms, parallelization {run.get('parallelization_factor', 1)}"
                )
                axes.plot(cdf, quantiles, label=label)
    for run in runs:
        limit = run["poll_interval_ms"] + LATENCY_MARGIN_MS
        axes.axvline(limit, color="grey", linestyle="--", linewidth=0.8)
    axes.axhline(0.99, color="grey", linestyle=":", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_xlabel("write → webhook delivery (ms, log scale; dashed: poll interval + 50 ms)")
    axes.set_ylabel("fraction of records")
    axes.set_title("Latency CDF")
    axes.legend(loc="lower right", fontsize="small")
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=110)
    return True


def markdown(results: dict[str, Any], images: dict[str, str]) -> str:  # noqa: C901, PLR0912, PLR0915 - one section after the other
    out: list[str] = []
    add = out.append
    settings = results.get("settings", {})
    m = results.get("machine", {})
    add("# Benchmarks")
    add("")
    add(
        f"Generated by `python -m bench.report` from the results of `make bench` ({results.get('mode')} run, "
        f"{results.get('started')}). Regenerate: `make bench`. Everything runs on a local moto server on the same "
        "machine: the figures compare the readers with one another, they do not predict AWS."
    )
    add("")
    add("## Goals and ratios")
    add("")
    add("Measured in the same run; the goals are reported, never asserted by a test.")
    add("")
    add("| goal | measured | basis | |")
    add("|---|---|---|---|")
    for goal, measured, basis, ok in goals(results):
        add(f"| {goal} | {measured} | {basis} | {_verdict(ok)} |")
    add("")
    drains = _drains(results)
    service = drains.get("service")
    if service:
        add("Ratios of the service to each baseline (drain):")
        add("")
        add("| | vs Java reference | vs boto3 poller |")
        add("|---|---|---|")
        ref, poller = drains.get("java-reference"), drains.get("boto3-poller")
        cpu = own_cpu_per_10k(service)
        cpu_jc = own_cpu_per_10k(service, ("jvm", "child"))
        add(
            f"| CPU per record, JVM + child | {_fmt(_ratio(cpu_jc, own_cpu_per_10k(ref) if ref else None))}{TIMES} | "
            f"{_fmt(_ratio(cpu_jc, own_cpu_per_10k(poller) if poller else None))}{TIMES} |"
        )
        add(
            f"| CPU per record, whole service (with the supervisor) | "
            f"{_fmt(_ratio(cpu, own_cpu_per_10k(ref) if ref else None))}{TIMES} | "
            f"{_fmt(_ratio(cpu, own_cpu_per_10k(poller) if poller else None))}{TIMES} |"
        )
        add(
            f"| throughput (records/s) | "
            f"{_fmt(_ratio(service['records_per_second'], ref['records_per_second'] if ref else None))}{TIMES} | "
            f"{_fmt(_ratio(service['records_per_second'], poller['records_per_second'] if poller else None))}{TIMES} |"
        )
        add("")
    add("## Machine")
    add("")
    add(
        f"{m.get('cores')} cores ({m.get('cpu_model')}), {m.get('memory_gib')} GiB RAM, Linux {m.get('kernel')}; "
        f"Python {m.get('python')}, {m.get('java')}; moto {m.get('moto')}; "
        f"{', '.join(j.removesuffix('.jar') for j in m.get('kcl_jars', []))}. "
        f"Load average {m.get('load_average_at_start')} at the start, {m.get('load_average_at_end')} at the end: "
        "the machine was shared with other work, so absolute numbers are noisy and the ratios (measured minutes "
        "apart in the same run) are the figures to read."
    )
    add("")
    fill = results.get("prefill")
    if fill:
        mix = ", ".join(f"{k} {v}" for k, v in fill["mix"].items())
        add("## Drain")
        add("")
        add(
            f"Pre-fill: {fill['records']:,} stream records ({mix}), items of 0.5{NONE}2 KB "
            f"(mean {fill['mean_item_bytes']} B; MODIFY records carry both images), written in {fill['seconds']} s "
            f"({fill['writes_per_second']:.0f} writes/s, {fill['method']}). Each reader then reads the whole stream "
            f"from TRIM_HORIZON: GetRecords of up to {settings.get('max_records')} records, poll interval "
            f"{settings.get('drain_poll_interval_ms')} ms."
        )
        add("")
        add(
            "The clock starts when the first batch is seen done (the first checkpoint in the lease table for the "
            "KCL readers, the first batch the poller reports) and stops at the last; records counted are those read "
            "in that window. This leaves out JVM start-up and the random 1-30 s a new KCL application waits before "
            "its first lease (column 'first batch after'). CPU is utime + stime of every process of the reader "
            "(/proc through psutil) over the same window; peak RSS is each process's VmHWM."
        )
        add("")
        if "drain" in images:
            add(f"![drain throughput and CPU]({images['drain']})")
            add("")
        add(
            "| reader | records/s | CPU s / 10k records | by process | moto CPU s / 10k | peak RSS MiB | "
            "idle CPU % | first batch after |"
        )
        add("|---|---|---|---|---|---|---|---|")
        for d in results.get("drain", []):
            by_role = d["cpu_seconds_per_10k_by_role"]
            own = ", ".join(f"{r} {v:.2f}" for r, v in by_role.items() if r in OWN_ROLES)
            rss = ", ".join(f"{r} {max(v):.0f}" for r, v in d["peak_rss_mib"].items() if r != "moto" and v)
            idle = ", ".join(f"{r} {v:.1f}" for r, v in d.get("idle_cpu_percent", {}).items()) or NONE
            add(
                f"| {READERS.get(d['reader'], d['reader'])} | {d['records_per_second']:,.0f} | "
                f"{_fmt(own_cpu_per_10k(d))} | {own} | {_fmt(by_role.get('moto'))} | {rss} | {idle} | "
                f"{d['until_first_batch_seconds']:.1f} s |"
            )
        add("")
        for d in results.get("drain", []):
            for note in d.get("notes", []):
                add(f"- {READERS.get(d['reader'], d['reader'])}: {note}")
        add("")
    runs = _latency_runs(results)
    if runs:
        add("## Latency")
        add("")
        add(
            "A writer process puts items at a fixed rate (PutItem; above 100 writes/s BatchWriteItem of rate/100 "
            "items, as moto spends milliseconds per request), each item carrying the time just before its request; "
            f"the service (max {settings.get('max_records')} records per read) delivers each change through a "
            f"{(results.get('latency') or {}).get('sink', 'webhook')}, which notes the arrival. Latency = arrival - "
            "write, first arrival per eventID, after a warm-up record went through. Each run is a new service on a "
            "new table."
        )
        add("")
        add(
            "moto is wrapped (`bench/timed_moto.py`) to note when each GetRecords began and ended, which splits a "
            "record's latency at the read that returned it: **wait** (write → the read's start: the poll interval, "
            "and reads queued behind slow ones), **endpoint** (the read itself) and **service** (the read's end → "
            "delivery: the KCL, the multilang hop, the child and the webhook sink). Only the last is this service's "
            "own; on AWS a GetRecords takes tens of milliseconds, here moto spends milliseconds per record."
        )
        add("")
        if "latency" in images:
            add(f"![latency CDF]({images['latency']})")
            add("")
        add(
            "| setting | target writes/s | achieved | written | delivered | p50 ms | p95 ms | p99 ms | max ms | "
            "p99 wait | p99 endpoint | p50 / p99 service |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for run in runs:
            for p in run["phases"]:
                s = p["latency_ms"]
                parts = p.get("parts_ms") or {}

                def part(name: str, q: str, parts: dict[str, Any] = parts) -> str:
                    return _fmt(parts.get(name, {}).get(q), 0)

                add(
                    f"| {_setting(run)} | {p['target_rate']:g} | {p['achieved_rate']:g} | {p['written']} | "
                    f"{p['delivered']} | {_fmt(s.get('p50'), 0)} | {_fmt(s.get('p95'), 0)} | "
                    f"{_fmt(s.get('p99'), 0)} | {_fmt(s.get('max'), 0)} | {part('wait', 'p99')} | "
                    f"{part('endpoint', 'p99')} | {part('service', 'p50')} / {part('service', 'p99')} |"
                )
        add("")
        for run in runs:
            for p in run["phases"]:
                b = p.get("batches") or {}
                if b:
                    add(
                        f"- {_setting(run)}, {p['achieved_rate']:g} writes/s: deliveries came in {b['count']} bursts "
                        f"every {b['interval_ms_mean']:.0f} ms on average, {b['records_mean']:g} records each; the "
                        f"newest record of a burst was written {b['newest_write_to_first_delivery_ms_mean']:.0f} ms "
                        f"before the burst's first delivery, and the webhook sink then took "
                        f"{b['per_message_ms_mean']:.2f} ms per message (spread of a burst over its records)."
                    )
                attributed = (p.get("parts_ms") or {}).get("attributed")
                if attributed and attributed["records"] < attributed["of"]:
                    add(
                        f"  ({attributed['of'] - attributed['records']} of {attributed['of']} records could not be "
                        "matched to a read and are left out of the split.)"
                    )
        for run in runs:
            for p in run["phases"]:
                if p["achieved_rate"] < 0.95 * p["target_rate"]:
                    add(
                        f"- At a target of {p['target_rate']:g} writes/s the local endpoint took "
                        f"{p['achieved_rate']:g}/s (writes ran {p['writer_late_p50_ms']:.0f} ms behind schedule at the "
                        f"median, {p['writer_threads']} writer threads): what moto sustained on this machine beside "
                        f"the service (moto used {p['cpu_seconds'].get('moto', 0):.0f} CPU s in the phase: GetRecords "
                        "and writes compete there, so latency at this rate measures the local endpoint's queue)."
                    )
                if p["delivered"] < p["written"]:
                    add(
                        f"- {p['written'] - p['delivered']} of {p['written']} records at {p['target_rate']:g} "
                        "writes/s had not arrived within 60 s of the writer's end (not lost: the run stopped waiting)."
                    )
        for run in runs:
            rss = run.get("peak_rss_mib", {})
            add(
                f"- Peak RSS, {_setting(run)}: "
                + ", ".join(f"{r} {max(v):.0f} MiB" for r, v in rss.items() if r != "moto" and v)
                + "."
            )
        add("")
    stages = results.get("stages")
    if stages:
        add("## Python stage per record")
        add("")
        add(
            f"pytest-benchmark (tests/bench) on one {stages['record_bytes']:,}-byte MODIFY record as the adapter "
            "hands it to the child: `decode_record` + `Router.route` (filter, route, render in the route's format) "
            "against `orjson.loads` and `json.loads` of the same bytes."
        )
        add("")
        add(f"| benchmark | median µs | mean µs | min µs | {TIMES} orjson.loads |")
        add("|---|---|---|---|---|")
        base = stages["benchmarks"].get("orjson_loads", {}).get("median_us")
        for name, b in stages["benchmarks"].items():
            add(
                f"| {name} | {b['median_us']:.1f} | {b['mean_us']:.1f} | {b['min_us']:.1f} | "
                f"{_fmt(_ratio(b['median_us'], base), 1)} |"
            )
        add("")
        for name, label in STAGE_LABELS:
            key = name.replace("stage_", "profile_")
            shares = stages.get(key) or {}
            if shares:
                add(
                    f"Where the stage's time goes ({label}, cProfile own time): "
                    + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
                    + "."
                )
                add("")
    prof = results.get("profile")
    if prof and prof.get("child", {}).get("samples"):
        add("## Profile of the child while draining")
        add("")
        add(
            f"py-spy sampled the `consumer.processor` child during a drain of {prof['records']:,} records "
            f"({prof['child']['samples']:,} samples, idle time excluded). Share of the child's busy time:"
        )
        add("")
        add("| part | share |")
        add("|---|---|")
        for part, share in prof["child"]["shares"].items():
            add(f"| {part} | {share:.0%} |")
        add("")
    add("## Method notes")
    add("")
    add(
        f"- KCL properties for every KCL reader: {json.dumps(settings.get('kcl_properties'))} (the integration "
        "tests' timings), the rest as `consumer run` renders them; the Java reference gets the very same rendered "
        "properties plus `referenceProcessor = count`."
    )
    add(
        "- moto serves one shard per table and spends milliseconds of CPU per record on GetRecords; it is the "
        "ceiling of every reader's throughput here. Its CPU is reported apart and excluded from the readers' CPU."
    )
    add(
        "- The KCL waits the poll interval after every GetRecords, records or not; the poller waits only after an "
        "empty one. At equal settings the KCL readers are therefore slower on a backlog by design."
    )
    add("- Raw data: `bench/results/results.json`, pytest-benchmark's own JSON beside it.")
    add("")
    return "\n".join(out)


def run_to_run(lines: list[dict[str, Any]]) -> str:
    """The headline figures of every full run so far, oldest first: how far one run's ratio can be trusted."""
    if not lines:
        return ""
    kinds = sorted({kind for line in lines for kind in line.get("stage_ratio", {})})
    out = [
        "",
        "## Run to run",
        "",
        (
            "Every full `make bench` so far (`bench/results/history.json`), on this shared machine. The code "
            "changed between most of them (the commit column); the spread between runs of the same code is the "
            "noise to read a ratio against. Child RSS: the webhook sink in the latency runs."
        ),
        "",
        "| started | commit | CPU ratio | service CPU s / 10k | reference CPU s / 10k | "
        + " | ".join(f"stage {kind}" for kind in kinds)
        + " | child peak RSS MiB |",
        "|---|---|---|---|---|" + "---|" * len(kinds) + "---|",
    ]
    for line in lines:
        cpu = line.get("cpu_per_10k") or {}
        stage = line.get("stage_ratio") or {}
        out.append(
            f"| {line.get('started')} | {line.get('commit') or NONE} | {_fmt(line.get('cpu_ratio'))}{TIMES}"
            f"{_rounds(line)} | "
            f"{_fmt(cpu.get('service_jvm_child'))} | {_fmt(cpu.get('java_reference'))} | "
            + " | ".join(f"{_fmt(stage.get(kind), 1)}{TIMES}" if kind in stage else NONE for kind in kinds)
            + f" | {_fmt(line.get('child_peak_rss_mib'), 0)} |"
        )
    out.append("")
    return "\n".join(out)


def _rounds(line: dict[str, Any]) -> str:
    rounds = line.get("drain_rounds", 1)
    return f" ({rounds} rounds)" if rounds > 1 else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    results = json.loads((args.results / "results.json").read_text(encoding="utf-8"))
    images: dict[str, str] = {}
    base = args.markdown.resolve().parent
    for name, plot in (("drain", plot_drain), ("latency", plot_latency)):
        path = args.results / f"{name}.png"
        if plot(results, path):
            images[name] = Path(os.path.relpath(path.resolve(), base)).as_posix()
    text = markdown(results, images) + run_to_run(history.load(args.results / "history.json"))
    args.markdown.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {args.markdown}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
