"""A markdown table of finished runs, read from their ``results.json`` (never typed by hand).

    python -m reczero_jax.tools.results_table NAME=WORKDIR [NAME=WORKDIR ...] [--seeds]
        [--no-seconds]

One row per run: the strict test MAE after the cold start and after GRPO, the biased MF
baseline on the same test examples, the share of the teacher-to-Bayes gap GRPO closed,
(teacher - grpo) / (teacher - bayes), whether it beats MF, and the run's wall seconds.
``--seeds`` adds a last row with the mean and the spread (min .. max) over the runs, for
the same config run with several seeds.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from reczero_jax.metrics import gap_closed

COLUMNS = ("sft MAE", "GRPO MAE", "biased MF", "gap closed", "beats MF", "seconds")


def row_of(results: dict) -> dict[str, float | bool | None]:
    """The table's numbers of one run's results.json dict (None where a figure is missing)."""
    mae = lambda key: (results.get(key) or {}).get("mae")  # noqa: E731
    grpo, sft = mae("grpo"), mae("sft")
    mf = (results.get("baselines", {}).get("mf") or {}).get("mae")
    teacher, bayes = mae("teacher"), mae("bayes_optimal")
    gap = None if None in (grpo, teacher, bayes) else gap_closed(grpo, teacher, bayes)
    return {
        "sft MAE": sft,
        "GRPO MAE": grpo,
        "biased MF": mf,
        "gap closed": gap,
        "beats MF": None if None in (grpo, mf) else grpo < mf,
        "seconds": results.get("seconds", {}).get("total"),
    }


def _cell(name: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name == "seconds":
        return f"{value:.0f}"
    return f"{value:.3f}" if name == "gap closed" else f"{value:.4f}"


def _spread(values: list[float], name: str) -> str:
    if not values:
        return ""
    mean = float(np.mean(values))
    return f"{_cell(name, mean)} ({_cell(name, min(values))} .. {_cell(name, max(values))})"


def table(runs: list[tuple[str, dict]], seeds: bool = False, seconds: bool = True) -> str:
    """Markdown table of ``runs`` (name, results dict); with ``seeds`` a mean row; without
    ``seconds`` no time column (runs measured under different loads)."""
    columns = COLUMNS if seconds else COLUMNS[:-1]
    lines = ["| run | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    rows = [(name, row_of(r)) for name, r in runs]
    for name, row in rows:
        lines.append(f"| {name} | " + " | ".join(_cell(c, row[c]) for c in columns) + " |")
    if seeds and rows:
        cells = []
        for c in columns:
            values = [r[c] for _, r in rows if r[c] is not None]
            if c == "beats MF":
                cells.append(f"{sum(values)} of {len(values)}")
            else:
                cells.append(_spread([float(v) for v in values], c))
        lines.append("| mean (min .. max) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=WORKDIR")
    parser.add_argument("--seeds", action="store_true", help="add the mean and spread row")
    parser.add_argument("--no-seconds", action="store_true", help="leave out the time column")
    args = parser.parse_args(argv)
    from reczero_jax.paths import as_path

    runs = []
    for spec in args.runs:
        name, sep, workdir = spec.partition("=")
        if not sep:
            name, workdir = spec, spec
        path = as_path(workdir) / "results.json"
        if not path.is_file():
            print(f"error: {path} does not exist (is {workdir} a finished run?)", file=sys.stderr)
            return 2
        runs.append((name, json.loads(path.read_text())))
    print(table(runs, seeds=args.seeds, seconds=not args.no_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
