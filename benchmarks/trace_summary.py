"""Where the time went in a ``jax.profiler`` trace, summed by kernel.

    python benchmarks/trace_summary.py TRACE_DIR [--top 25]

Reads the newest ``*.trace.json.gz`` under TRACE_DIR (what ``jax.profiler.trace`` writes)
and, for each device in it (processes named ``/device:...``; the host when there is
none), prints the events, the busy time and the span, the share of each kind of kernel
(matrix products, copies, other fusions) and the kernels that took the most time. The
benchmarks' ``--profile DIR`` flags call :func:`profile_call` and print this summary.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import pathlib
import sys

import jax

GEMM_MARKS = ("gemm", "nvjet", "xmma", "cutlass", "cublas", "dot")
COPY_MARKS = ("memcpy", "copy")


def kind(name: str) -> str:
    """'matmul', 'copy' or 'other' for a kernel or op name."""
    low = name.lower()
    if any(m in low for m in COPY_MARKS):
        return "copy"
    if any(m in low for m in GEMM_MARKS):
        return "matmul"
    return "other"


def newest_trace(trace_dir: str | pathlib.Path) -> pathlib.Path:
    found = sorted(
        pathlib.Path(trace_dir).glob("**/*.trace.json.gz"), key=lambda p: p.stat().st_mtime
    )
    if not found:
        raise FileNotFoundError(f"no *.trace.json.gz under {trace_dir}")
    return found[-1]


def summarize(trace_dir: str | pathlib.Path, top: int = 25) -> dict:
    """{process name: {events, busy_ms, span_ms, kinds {kind: share of busy}, top [(name,
    ms, count)]}} for the device processes of the newest trace (the host's if none)."""
    with gzip.open(newest_trace(trace_dir)) as f:
        data = json.load(f)
    names = {
        e["pid"]: e["args"]["name"]
        for e in data["traceEvents"]
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    spans = [e for e in data["traceEvents"] if e.get("ph") == "X" and "dur" in e]
    devices = {pid for pid, name in names.items() if name.startswith("/device:")}
    if devices:
        spans = [e for e in spans if e["pid"] in devices]
    out = {}
    for pid in sorted({e["pid"] for e in spans}):
        events = [e for e in spans if e["pid"] == pid]
        total = collections.Counter()
        count = collections.Counter()
        by_kind = collections.Counter()
        for e in events:
            total[e["name"]] += e["dur"]
            count[e["name"]] += 1
            by_kind[kind(e["name"])] += e["dur"]
        busy = sum(total.values())
        start = min(e["ts"] for e in events)
        end = max(e["ts"] + e["dur"] for e in events)
        out[names.get(pid, str(pid))] = {
            "events": len(events),
            "busy_ms": round(busy / 1e3, 3),
            "span_ms": round((end - start) / 1e3, 3),
            "kinds": {k: round(v / max(busy, 1e-9), 4) for k, v in by_kind.most_common()},
            "top": [(n, round(v / 1e3, 3), count[n]) for n, v in total.most_common(top)],
        }
    return out


def format_summary(summary: dict) -> str:
    lines = []
    for process, s in summary.items():
        kinds = ", ".join(f"{k} {100 * v:.1f}%" for k, v in s["kinds"].items())
        lines.append(
            f"### {process}: {s['events']} events, busy {s['busy_ms']:.1f} ms in a "
            f"{s['span_ms']:.1f} ms span ({kinds})"
        )
        lines += [f"{ms:10.3f} ms {n:7d}  {name[:110]}" for name, ms, n in s["top"]]
    return "\n".join(lines)


def profile_call(fn, trace_dir: str | pathlib.Path, top: int = 25) -> dict:
    """Runs ``fn()`` (which must block until its results are ready) under
    ``jax.profiler.trace(trace_dir)`` and prints the summary to stderr; returns it without
    the top kernels (for a benchmark's JSON line)."""
    with jax.profiler.trace(str(trace_dir)):
        fn()
    summary = summarize(trace_dir, top)
    print(format_summary(summary), file=sys.stderr)
    return {p: {k: v for k, v in s.items() if k != "top"} for p, s in summary.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace_dir")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    print(format_summary(summarize(args.trace_dir, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
