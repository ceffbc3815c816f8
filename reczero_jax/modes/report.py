"""Mode 'report': ``report.md`` and PNG plots of a run directory.

    python -m reczero_jax.main --config configs/demo.py --config.mode=report \\
        --config.workdir=/tmp/reczero_demo                  # or --config.report.run_dir=DIR
    # overlay more runs' curves, and list their final models in a second table
    ... --config.report.compare=/tmp/run_a,/tmp/run_b

What a run directory holds and what the report takes from it:

* ``metrics.jsonl`` (:mod:`reczero_jax.observe.writer`): the curves, one PNG per quantity and
  phase under ``report/`` (``sft_loss.png``, ``grpo_reward.png``, ``grpo_mae.png``...); a
  quantity the run did not log has no plot (the report says which);
* ``results.json``: the final table (each trained model's strict MAE, RMSE and valid rate,
  the teacher, the Bayes floor when known, the baselines sorted by MAE, and the fraction of
  the teacher-to-Bayes gap each model closed) and the timings;
* ``config.json`` (absent in older runs): a few of the run's settings;
* ``predictions.jsonl`` (absent in older runs): three example reasonings of the last trained
  model: a good one, a bad one and an invalid one.

Everything is read and written through ``etils.epath`` (:mod:`reczero_jax.paths`), so a
``gs://`` run directory works like a local one. Plots are drawn on ``matplotlib.figure.Figure``
objects (the Agg canvas, no ``pyplot``): no global matplotlib state changes. The output is
deterministic: ``report.md`` holds nothing that is not in the inputs (no date).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from etils import epath

from reczero_jax.config_parsing import ConfigError
from reczero_jax.metrics import gap_closed
from reczero_jax.observe.logs import log
from reczero_jax.observe.writer import JSONL_NAME, read_jsonl
from reczero_jax.paths import as_path
from reczero_jax.rl.evaluation import PREDICTIONS_FILE, read_predictions

REPORT_FILE = "report.md"
PLOT_DIR = "report"
RESULTS_FILE = "results.json"
CONFIG_FILE = "config.json"
MODELS = ("sft", "grpo", "eval")  # the trained models of results.json, in run order
PREFERRED_EXAMPLE_MODELS = ("grpo", "sft")  # whose reasonings the report shows, first found
SECTIONS = ("analyze user", "analyze item", "match", "rate")
CONFIG_KEYS = (
    "mode", "seed", "data.source", "model.hf_dir", "sft.steps", "sft.batch_size",
    "sft.traces", "sft.num_traces", "sft.rewrite_wrong", "grpo.steps",
    "grpo.prompts_per_step", "grpo.num_generations", "grpo.kl_coef", "grpo.reward_preset",
    "eval.split", "eval.num_examples",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Plot:
    """One figure: the ``series`` (metric key, legend label) of one phase on shared axes."""

    name: str  # the file is report/<name>.png
    phase: str
    title: str
    ylabel: str
    series: tuple[tuple[str, str], ...]
    log_y: bool = False


PLOTS = (
    Plot("sft_loss", "sft", "SFT loss (cross-entropy on the traces)", "loss",
         (("sft/loss", "training loss"),), log_y=True),
    Plot("sft_entropy", "sft", "SFT policy entropy", "nats / token",
         (("sft/policy/entropy", "entropy"),), log_y=True),
    Plot("grpo_reward", "grpo", "GRPO reward (mean over the rollouts)", "reward",
         (("grpo/reward/mean", "rollouts"),)),
    Plot("grpo_mae", "grpo", "GRPO strict MAE", "MAE",
         (("eval/mae", "validation (greedy)"), ("grpo/batch/mae", "rollouts"))),
    Plot("grpo_format_valid", "grpo", "GRPO format-valid rate", "fraction valid",
         (("eval/format_valid_rate", "validation (greedy)"),
          ("grpo/format/valid_frac", "rollouts"))),
    Plot("grpo_response_length", "grpo", "GRPO response length", "tokens",
         (("eval/mean_response_tokens", "validation (greedy)"),
          ("grpo/response/length_mean", "rollouts"))),
    Plot("grpo_entropy", "grpo", "GRPO policy entropy", "nats / token",
         (("grpo/policy/entropy", "entropy"),)),
    Plot("grpo_kl", "grpo", "GRPO KL to the reference policy", "KL",
         (("grpo/policy/kl", "KL"),)),
    Plot("grpo_zero_std_groups", "grpo", "GRPO groups whose rewards have zero spread",
         "fraction of groups", (("grpo/groups/frac_reward_zero_std", "zero-spread groups"),)),
)  # fmt: skip


@dataclasses.dataclass
class Run:
    """What a run directory holds (None for a file it lacks)."""

    path: epath.Path
    label: str
    rows: list[dict] | None
    results: dict | None
    config: dict | None


# --------------------------------------------------------------------------- reading


def check_run_dir(run_dir, key: str = "") -> epath.Path:
    """``run_dir`` as a path; ConfigError naming it (and the config ``key`` it came from)
    unless it is a folder holding ``metrics.jsonl`` or ``results.json``."""
    path = as_path(run_dir)
    where = f"{key}: " if key else ""
    expected = (
        f"expected a run directory (the workdir of a training run) holding {JSONL_NAME} "
        f"and {RESULTS_FILE}"
    )
    if not os.fspath(run_dir):
        raise ConfigError(f"{where}no run directory given: {expected}")
    if not path.is_dir():
        raise ConfigError(f"{where}{path} does not exist or is not a folder: {expected}")
    if not (path / JSONL_NAME).exists() and not (path / RESULTS_FILE).exists():
        raise ConfigError(
            f"{where}{path} holds neither {JSONL_NAME} nor {RESULTS_FILE}: {expected}"
        )
    return path


def _read_json(path: epath.Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(f"{path}: not readable JSON ({e})") from e


def load_run(run_dir, label: str, key: str = "") -> Run:
    path = check_run_dir(run_dir, key)
    metrics = path / JSONL_NAME
    return Run(
        path=path,
        label=label,
        rows=read_jsonl(metrics) if metrics.exists() else None,
        results=_read_json(path / RESULTS_FILE),
        config=_read_json(path / CONFIG_FILE),
    )


def run_labels(run_dirs: Sequence) -> list[str]:
    """A legend name per run: the folder's name, or the whole path when two names clash."""
    names = [as_path(d).name or os.fspath(d) for d in run_dirs]
    if len(set(names)) < len(names):
        return [os.fspath(d) for d in run_dirs]
    return names


# --------------------------------------------------------------------------- numbers


def series(rows: Iterable[Mapping], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key`` in the rows of a metrics.jsonl, sorted by step. A step
    logged several times (a resumed run) keeps its last value; ``null`` (a non-finite value)
    and rows without the key are left out."""
    last: dict[int, float] = {}
    for row in rows:
        value = row.get(key)
        if value is None or "step" not in row:
            continue
        last[int(row["step"])] = float(value)
    steps = sorted(last)
    return steps, [last[s] for s in steps]


def smoothing_window(n: int) -> int:
    """The moving average's width for ``n`` points: 1 (none) below 10 points, else about a
    twentieth of them (at least 3), odd, at most 51."""
    if n < 10:
        return 1
    w = min(51, max(3, n // 20))
    return w if w % 2 else w + 1


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Centred moving average over ``window`` points (odd); near the ends, the mean of the
    points the window covers."""
    v = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(v) < 3:
        return v.tolist()
    kernel = np.ones(window)
    total = np.convolve(v, kernel, mode="same")
    count = np.convolve(np.ones_like(v), kernel, mode="same")
    return (total / count).tolist()


def _teacher(results: Mapping) -> dict | None:
    t = results.get("teacher") or results.get("baselines", {}).get("teacher")
    return t if isinstance(t, dict) and "mae" in t else None


def final_table(results: Mapping) -> list[dict]:
    """The rows of the final table: each trained model (run order), the teacher, the Bayes
    floor (when known), then the baselines by MAE. A row: ``name``, ``kind`` ('model',
    'teacher', 'bayes', 'baseline'), ``mae``, ``rmse``, ``valid`` (format-valid rate, models
    only, else None), ``gap_closed`` (models only, when teacher and floor are known)."""
    teacher, bayes = _teacher(results), results.get("bayes_optimal")
    bayes = bayes if isinstance(bayes, dict) and "mae" in bayes else None
    rows = []
    for name in MODELS:
        r = results.get(name)
        if isinstance(r, dict) and "mae" in r:
            closed = None
            if teacher is not None and bayes is not None:
                closed = gap_closed(r["mae"], teacher["mae"], bayes["mae"])
            rows.append(_row(name, "model", r, r.get("format_valid_rate"), closed))
    if teacher is not None:
        rows.append(_row("teacher", "teacher", teacher))
    if bayes is not None:
        rows.append(_row("Bayes floor", "bayes", bayes))
    baselines = [
        (name, r)
        for name, r in results.get("baselines", {}).items()
        if name != "teacher" and isinstance(r, dict) and "mae" in r
    ]
    for name, r in sorted(baselines, key=lambda item: (item[1]["mae"], item[0])):
        rows.append(_row(name, "baseline", r))
    return rows


def _row(name, kind, r, valid=None, closed=None) -> dict:
    return {"name": name, "kind": kind, "mae": r["mae"], "rmse": r.get("rmse"),
            "valid": valid, "gap_closed": closed}  # fmt: skip


def results_from_metrics(rows: Iterable[Mapping]) -> dict:
    """The trained models' final metrics from ``final/<model>_<metric>`` keys (logged at
    step 0), for a run without results.json (still running or killed)."""
    out: dict[str, dict] = {}
    for row in rows:
        for key, value in row.items():
            if not key.startswith("final/") or value is None:
                continue
            for model in MODELS:
                if key.startswith(f"final/{model}_"):
                    out.setdefault(model, {})[key[len(f"final/{model}_") :]] = value
    return out


def example_model(records: Sequence[Mapping]) -> str | None:
    """The model whose reasonings the report shows: 'grpo', else 'sft', else the last model
    in the file; None without records."""
    models = [r.get("model") for r in records]
    for name in PREFERRED_EXAMPLE_MODELS:
        if name in models:
            return name
    return models[-1] if models else None


def pick_examples(records: Sequence[Mapping]) -> dict:
    """``{'good', 'bad', 'invalid'}``: the valid record of smallest strict error, the valid
    record of largest strict error, the first invalid record (None when there is none);
    ties go to the earlier record."""
    valid = [(r["strict_error"], i) for i, r in enumerate(records) if r.get("valid")]
    invalid = [r for r in records if not r.get("valid")]
    return {
        "good": records[min(valid)[1]] if valid else None,
        "bad": records[min(valid, key=lambda e: (-e[0], e[1]))[1]] if valid else None,
        "invalid": invalid[0] if invalid else None,
    }


# --------------------------------------------------------------------------- plots


def draw(plot: Plot, runs: Sequence[Run]) -> bytes | None:
    """The PNG of ``plot`` over ``runs`` (each run's series overlaid: colour per run when
    several, else per series); None when no run logged any of its keys. Series of 10 points
    or more are drawn faintly with a moving average over them (of the logarithms on a
    log scale)."""
    curves = []
    for i, run in enumerate(runs):
        for j, (key, label) in enumerate(plot.series):
            steps, values = series(run.rows or (), key)
            if steps:
                curves.append((i, j, run.label, label, steps, values))
    if not curves:
        return None
    from matplotlib.figure import Figure  # the Agg canvas; pyplot's global state untouched

    fig = Figure(figsize=(6.4, 3.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    several = len(runs) > 1
    log_y = plot.log_y and all(v > 0 for *_, values in curves for v in values)
    for i, j, run_label, label, steps, values in curves:
        color = f"C{i if several else j}"
        style = ("-", "--", ":", "-.")[j % 4]
        name = label if not several else (run_label if len(plot.series) == 1 else
                                          f"{run_label}: {label}")  # fmt: skip
        window = smoothing_window(len(steps))
        if window > 1:
            ax.plot(steps, values, color=color, alpha=0.35, linewidth=0.8)
            line = (np.exp(smooth(np.log(values), window)).tolist() if log_y
                    else smooth(values, window))  # fmt: skip
            ax.plot(steps, line, color=color, linestyle=style, label=name)
        else:
            ax.plot(steps, values, color=color, linestyle=style, marker="o", markersize=4,
                    label=name)  # fmt: skip
    if log_y:
        ax.set_yscale("log")
    ax.set_title(plot.title)
    ax.set_xlabel(f"{plot.phase.upper()} step")
    ax.set_ylabel(plot.ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def write_plots(runs: Sequence[Run], plot_dir: epath.Path) -> tuple[list[Plot], list[Plot]]:
    """Writes ``plot_dir/<name>.png`` for every plot some run has data for (and removes a
    stale file of a plot that has none now); returns (drawn, skipped)."""
    drawn, skipped = [], []
    for plot in PLOTS:
        png = draw(plot, runs)
        path = plot_dir / f"{plot.name}.png"
        if png is None:
            skipped.append(plot)
            if path.exists():
                path.unlink()
            continue
        plot_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        drawn.append(plot)
    return drawn, skipped


# --------------------------------------------------------------------------- markdown


def _num(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return f"{x:.{digits}f}"


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def _rating(x) -> str:
    return "none" if x is None else f"{x:g}"


def table_lines(
    rows: Sequence[dict], run: str | None = None, gap: bool | None = None, kind: bool = True
) -> list[str]:
    """Markdown lines of :func:`final_table` rows: a ``run`` column when given, the
    ``kind`` column when asked, a 'gap closed' column when ``gap`` (by default when some
    row has one)."""
    if gap is None:
        gap = any(r["gap_closed"] is not None for r in rows)
    columns = [("run", "---")] if run is not None else []
    columns += [("model" if run is not None else "", "---")]
    columns += [("kind", "---")] if kind else []
    columns += [("MAE", "---:"), ("RMSE", "---:"), ("valid", "---:")]
    columns += [("gap closed", "---:")] if gap else []
    lines = ["| " + " | ".join(c for c, _ in columns) + " |"]
    lines.append("|" + "|".join(a for _, a in columns) + "|")
    for r in rows:
        cells = [run] if run is not None else []
        cells += [f"**{r['name']}**" if r["kind"] == "model" and kind else r["name"]]
        cells += [r["kind"]] if kind else []
        cells += [_num(r["mae"]), _num(r["rmse"]), _num(r["valid"], 3)]
        cells += [_pct(r["gap_closed"])] if gap else []
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _config_value(config: Mapping, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _fence(text: str) -> list[str]:
    longest, run = 0, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return [fence + "text", text, fence]


def example_lines(title: str, record: Mapping) -> list[str]:
    """One example reasoning: its facts and its four sections (an invalid one: the raw
    answer) in a fenced block."""
    predicted = record.get("predicted")
    facts = (
        f"user `{record.get('user')}`, item `{record.get('item')}` "
        f"({record.get('split', '?')} split): true rating {_rating(record.get('rating'))}, "
        f"predicted {_rating(predicted)}, strict error {_num(record.get('strict_error'), 2)}"
    )
    if not record.get("valid"):
        facts += " (no valid rating: the error is against the user-average fallback)"
        body = record.get("answer", "")
    else:
        sections = record.get("sections") or {}
        names = list(SECTIONS) + [k for k in sections if k not in SECTIONS]
        body = "\n".join(f"{n}: {sections.get(n) or '(missing)'}" for n in names)
    return [f"### {title}", "", facts + ".", "", *_fence(body), ""]


def header_lines(main: Run, compare: Sequence[Run], has_predictions: bool) -> list[str]:
    results = main.results or {}
    mode = results.get("mode") or (main.config or {}).get("mode") or "unknown"
    found = {
        JSONL_NAME: main.rows is not None,
        RESULTS_FILE: main.results is not None,
        CONFIG_FILE: main.config is not None,
        PREDICTIONS_FILE: has_predictions,
    }
    out = [
        f"# Run report: {main.path.name or main.label}",
        "",
        f"- run directory: `{os.fspath(main.path)}`",
        f"- mode: `{mode}`",
        "- files: " + ", ".join(f"{k}: {'yes' if v else 'absent'}" for k, v in found.items()),
    ]
    if compare:
        out.append(f"- compared with: {', '.join(f'`{os.fspath(r.path)}`' for r in compare)}")
    if isinstance(results.get("preempted"), Mapping):
        p = results["preempted"]
        out.append(f"- **preempted** in phase {p.get('phase')} at step {p.get('step')}")
    return [*out, ""]


def settings_lines(config: Mapping | None) -> list[str]:
    """A few of the run's settings (:data:`CONFIG_KEYS`) from its config.json."""
    if config is None:
        return []
    out = ["## Settings", "", "From `config.json` (the run's resolved config).", ""]
    out += ["| key | value |", "|---|---|"]
    for key in CONFIG_KEYS:
        value = _config_value(config, key)
        if value is not None and value != "":
            out.append(f"| `{key}` | `{json.dumps(value)}` |")
    return [*out, ""]


def _final_source(run: Run) -> dict:
    """results.json, or for a run without it the ``final/`` metrics of metrics.jsonl."""
    return run.results if run.results is not None else results_from_metrics(run.rows or ())


def final_lines(main: Run) -> list[str]:
    out = ["## Final results", ""]
    source = _final_source(main)
    if main.results is None and source:
        out += ["No results.json (the run is still going or was stopped): the models' "
                "figures are the `final/` metrics of metrics.jsonl.", ""]  # fmt: skip
    rows = final_table(source)
    if not rows:
        return [*out, "No final metrics in this run directory.", ""]
    sizes = [r.get("num_examples") for r in map(source.get, MODELS) if isinstance(r, dict)]
    n = next((size for size in sizes if size), None)
    split = _config_value(main.config or {}, "eval.split")
    on = f" on {n} {split + ' ' if split else ''}examples" if n else ""
    out += [f"Strict metrics{on}: an answer without a valid rating counts with the "
            "user-average fallback. Baselines are sorted by MAE.", ""]  # fmt: skip
    out += table_lines(rows)
    if any(r["gap_closed"] is not None for r in rows):
        out += ["", "*gap closed* = (teacher MAE - model MAE) / (teacher MAE - Bayes floor "
                "MAE): 0% at the teacher, 100% at the floor."]  # fmt: skip
    return [*out, ""]


def compare_lines(runs: Sequence[Run]) -> list[str]:
    """One table of every run's trained models (a run without any: one empty row)."""
    tables = []
    for run in runs:
        rows = [r for r in final_table(_final_source(run)) if r["kind"] == "model"]
        tables.append((run.label, rows or [_row("(no final metrics)", "", {"mae": None})]))
    gap = any(r["gap_closed"] is not None for _, rows in tables for r in rows)
    out = ["## Compared runs", "", "Each run's trained models (strict metrics).", ""]
    for i, (label, rows) in enumerate(tables):
        out += table_lines(rows, run=label, gap=gap, kind=False)[0 if i == 0 else 2 :]
    return [*out, ""]


def seconds_lines(seconds) -> list[str]:
    """The phases' wall-clock times from results.json ``seconds``."""
    if not isinstance(seconds, Mapping) or not seconds:
        return []
    out = ["## Timings", "", "From results.json `seconds`.", ""]
    out += ["| phase | seconds | minutes |", "|---|---:|---:|"]
    for name, value in seconds.items():
        phase = name[:-2] if name.endswith("_s") else name
        if phase.startswith("eval_"):
            phase = f"eval ({phase[len('eval_') :]})"
        out.append(f"| {phase} | {value:.1f} | {value / 60:.1f} |")
    return [*out, ""]


def plot_lines(drawn: Sequence[Plot], skipped: Sequence[Plot], several: bool) -> list[str]:
    out = ["## Training curves", ""]
    if not drawn:
        out += ["Nothing to plot: no metrics.jsonl, or none of the plotted metrics in it.", ""]
    else:
        colours = "one colour per run" if several else "one colour per series"
        out += ["Faint: the logged points; solid or dashed: a centred moving average over "
                "about a twentieth of them (series of fewer than 10 points: the points); "
                f"{colours}.", ""]  # fmt: skip
        for phase in dict.fromkeys(p.phase for p in drawn):
            out += [f"### {phase.upper()}", ""]
            for plot in (p for p in drawn if p.phase == phase):
                out += [f"![{plot.title}]({PLOT_DIR}/{plot.name}.png)", ""]
    if skipped:
        names = ", ".join(f"{p.name} ({', '.join(k for k, _ in p.series)})" for p in skipped)
        out += [f"Not logged, so not plotted: {names}.", ""]
    return out


def examples_lines(predictions: Sequence[Mapping] | None) -> list[str]:
    """A good, a bad and an invalid answer of :func:`example_model` (None: the run has no
    predictions.jsonl)."""
    out = ["## Example reasonings", ""]
    if predictions is None:
        return [*out, f"No {PREDICTIONS_FILE} in this run directory (runs from before "
                "evaluations wrote one have none): no example reasonings.", ""]  # fmt: skip
    if not predictions:
        return [*out, f"{PREDICTIONS_FILE} holds no records: no example reasonings.", ""]
    model = example_model(predictions)
    records = [r for r in predictions if r.get("model") == model]
    picks = pick_examples(records)
    invalid = sum(1 for r in records if not r.get("valid"))
    answers = f"{len(records)} answer{'' if len(records) == 1 else 's'}"
    out += [f"Model `{model}`: {answers} in {PREDICTIONS_FILE}, {invalid} invalid.", ""]
    if picks["good"] is None:
        out += ["No valid answer: no good or bad example.", ""]
    else:
        out += example_lines("A good one (valid, smallest strict error)", picks["good"])
        out += example_lines("A bad one (valid, largest strict error)", picks["bad"])
    if picks["invalid"] is None:
        return [*out, "### An invalid one", "", f"None of the {len(records)} answers was "
                "invalid.", ""]  # fmt: skip
    return out + example_lines("An invalid one (no valid rating)", picks["invalid"])


def report_markdown(
    main: Run,
    compare: Sequence[Run],
    drawn: Sequence[Plot],
    skipped: Sequence[Plot],
    predictions: Sequence[Mapping] | None,
) -> str:
    """The text of report.md (pure: the same inputs give the same text)."""
    out = header_lines(main, compare, predictions is not None)
    out += settings_lines(main.config)
    out += final_lines(main)
    out += compare_lines([main, *compare]) if compare else []
    out += seconds_lines((main.results or {}).get("seconds"))
    out += plot_lines(drawn, skipped, several=bool(compare))
    out += examples_lines(predictions)
    return "\n".join(out).rstrip("\n") + "\n"


# --------------------------------------------------------------------------- entry points


def build_report(
    run_dir, compare: Sequence = (), out_dir=None, key: str = ""
) -> tuple[epath.Path, list[str]]:
    """Writes report.md and its plots; returns (report.md's path, the plot files written).
    ``key``: the config key ``run_dir`` came from, for error messages."""
    dirs = [run_dir, *compare]
    labels = run_labels(dirs)
    # every folder is checked before anything is read or written
    keys = [key] + ["report.compare"] * len(compare)
    for d, key in zip(dirs, keys):
        check_run_dir(d, key)
    runs = [load_run(d, label, key) for d, label, key in zip(dirs, labels, keys)]
    main = runs[0]
    out = as_path(out_dir) if out_dir is not None and os.fspath(out_dir) else main.path
    out.mkdir(parents=True, exist_ok=True)
    plot_dir = out / PLOT_DIR
    drawn, skipped = write_plots(runs, plot_dir)
    predictions = read_predictions(main.path) if (main.path / PREDICTIONS_FILE).exists() else None
    text = report_markdown(main, runs[1:], drawn, skipped, predictions)
    path = out / REPORT_FILE
    path.write_text(text)
    log.info("report: wrote %s and %d plot(s) in %s", path, len(drawn), plot_dir)
    return path, [os.fspath(plot_dir / f"{p.name}.png") for p in drawn]


def write_report(run_dir, compare: Sequence = (), out_dir=None) -> epath.Path:
    """``<out_dir>/report.md`` and ``<out_dir>/report/*.png`` for the run in ``run_dir``
    (``out_dir`` defaults to ``run_dir``), the curves of the ``compare`` runs overlaid;
    returns report.md's path. ConfigError naming the folder when one is not a run
    directory."""
    return build_report(run_dir, compare, out_dir)[0]


def parse_compare(compare: str) -> list[str]:
    """``report.compare``: comma-separated run directories (blanks ignored)."""
    return [part.strip() for part in compare.split(",") if part.strip()]


def run(settings) -> dict:
    """Mode 'report': the report of ``report.run_dir`` (default: ``workdir``)."""
    key = "report.run_dir" if settings.report.run_dir else "workdir"
    run_dir = settings.report.run_dir or settings.workdir
    path, plots = build_report(run_dir, parse_compare(settings.report.compare), key=key)
    return {"mode": "report", "report": os.fspath(path), "plots": plots}
