"""Where the child's time goes while it drains: py-spy samples the `consumer.processor` child the KCL starts.

py-spy cannot attach to a running child here reliably, so it starts the child itself: the KCL runs a wrapper
script instead of `python -m consumer.processor`. py-spy prints to stdout, which is the multilang protocol's
channel, so the wrapper keeps the protocol pipe on fd 3 and gives it back to the child as its fd 1.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# A sample is charged to the innermost frame that belongs to one of these (file path fragments, first match).
CATEGORIES = (
    ("consumer/decode.py", "decode (consumer.decode)"),
    ("consumer/events.py", "decode (consumer.decode)"),
    ("consumer/filters.py", "filter"),
    ("consumer/router.py", "route + render"),
    ("consumer/jsontext.py", "route + render"),
    ("consumer/formats.py", "route + render"),
    ("consumer/sinks/", "sink"),
    ("prometheus_client/", "metrics (prometheus multiprocess files)"),
    ("consumer/metrics.py", "metrics (prometheus multiprocess files)"),
    ("structlog/", "logging"),
    ("consumer/checkpoint.py", "checkpoint (protocol round trip)"),
    ("consumer/delivery.py", "delivery pipeline"),
    ("consumer/health.py", "health state files"),
    ("consumer/processor.py", "processor"),
    ("amazon_kclpy/", "multilang protocol (kclpy: JSON, base64, messages)"),
)


def wrapper(workdir: Path, rate: int = 200) -> Path:
    """The script the KCL starts as the child; it writes one raw profile per child process."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    child = (
        "import os, runpy; os.dup2(3, 1); os.close(3); "
        "runpy.run_module('consumer.processor', run_name='__main__', alter_sys=True)"
    )
    script = workdir / "profiled-child.sh"
    script.write_text(
        "#!/bin/sh\n"
        "# fd 3: the protocol pipe, for the child; py-spy's own messages go to stderr.\n"
        "exec 3>&1 1>&2\n"
        f'exec "{spy}" record --rate {rate} --format raw --output "{workdir}/child-$$.txt" --nonblocking -- '
        f'"{sys.executable}" -c "{child}"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def categorise(workdir: Path) -> dict[str, object]:
    """Samples per category over every raw profile the children wrote, as shares of all samples."""
    counts: dict[str, int] = {}
    hot: dict[str, int] = {}
    for path in workdir.glob("child-*.txt"):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            stack, _, number = line.rpartition(" ")
            if not number.isdigit():
                continue
            frames = stack.split(";")
            category = next(
                (name for frame in reversed(frames) for part, name in CATEGORIES if part in frame),
                "startup and other",
            )
            counts[category] = counts.get(category, 0) + int(number)
            leaf = frames[-1] if frames else "?"
            hot[leaf] = hot.get(leaf, 0) + int(number)
    total = sum(counts.values())
    if not total:
        return {"samples": 0}
    top = sorted(hot.items(), key=lambda kv: -kv[1])[:15]
    return {
        "samples": total,
        "shares": {k: round(v / total, 3) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])},
        "hottest_frames": [{"frame": frame, "share": round(n / total, 3)} for frame, n in top],
    }
