"""Markdown tables of ``benchmarks/gpu.sh``'s results.jsonl (one JSON object per line,
each a benchmark's last line plus its ``step`` name):

    python benchmarks/gpu_table.py RESULTS.jsonl

Sampler rows (``decode_step_ms`` present) and update rows (``step_s`` present) go to two
tables; other lines are ignored.
"""

from __future__ import annotations

import json
import sys


def _fmt(x, digits: int = 1, scale: float = 1.0, pct: bool = False) -> str:
    if x is None:
        return "-"
    if pct:
        return f"{100 * x:.{digits}f}%"
    return f"{x / scale:,.{digits}f}"


def sampler_table(rows: list[dict]) -> str:
    lines = [
        "| device | decode layer loop | cache phases | rows (B x G) | prompt + new | "
        "decode step ms | decode tokens/s | HBM GB/s | roofline (datasheet) | "
        "roofline (measured copy) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        loop = "unrolled" if r.get("unroll_layers") else "scan"
        lines.append(
            f"| {r['device']} | {loop} | {r.get('cache_phases', 1)} | {r['rows']} "
            f"({r['batch_prompts']} x "
            f"{r['samples_per_prompt']}) | {r['prompt_len']} + {r['new_tokens']} | "
            f"{r['decode_step_ms']:.3f} | {_fmt(r['decode_tokens_per_s'], 0)} | "
            f"{_fmt(r['hbm_bytes_per_s'], 0, 1e9)} | {_fmt(r['roofline_fraction'], pct=True)} | "
            f"{_fmt(r.get('roofline_fraction_vs_measured'), pct=True)} |"
        )
    return "\n".join(lines)


def update_table(rows: list[dict]) -> str:
    lines = [
        "| device | shape (B x G, P + T) | attention | remat | log-prob remat | micro-batches | "
        "step s | tokens/s | model TFLOP/s | MFU (datasheet) | MFU (measured matmul) | "
        "compile s |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        micro = r["prompts"] // r["micro_groups"]
        lines.append(
            f"| {r['device']} | {r['prompts']} x {r['samples_per_prompt']}, "
            f"{r['prompt_len']} + {r['answer_len']} | {r.get('attention', 'einsum')} | "
            f"{r['remat']} | "
            f"{'yes' if r.get('logits_remat', True) else 'no'} | {micro} | "
            f"{r['step_s']:.3f} | {_fmt(r['tokens_per_s'], 0)} | "
            f"{r['model_tflops_per_s_per_chip']:.1f} | {_fmt(r['mfu'], pct=True)} | "
            f"{_fmt(r.get('mfu_vs_measured'), pct=True)} | {r['compile_s']:.0f} |"
        )
    return "\n".join(lines)


def tables(lines: list[str]) -> str:
    rows = [json.loads(line) for line in lines if line.strip().startswith("{")]
    samplers = [r for r in rows if "decode_step_ms" in r]
    updates = [r for r in rows if "step_s" in r]
    parts = []
    if samplers:
        parts.append(sampler_table(samplers))
    if updates:
        parts.append(update_table(updates))
    return "\n\n".join(parts) if parts else "(no results)"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        print(tables(f.readlines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
