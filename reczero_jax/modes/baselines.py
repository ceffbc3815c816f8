"""Mode 'baselines': the classical rating predictors on the test examples
(:mod:`reczero_jax.baselines.evaluate`), printed and written to ``workdir/results.json``
(the workdir may be remote, :mod:`reczero_jax.paths`)."""

from __future__ import annotations

import json
import time

from reczero_jax.baselines.evaluate import baseline_results
from reczero_jax.data.loader import load_raw
from reczero_jax.observe.logs import log
from reczero_jax.paths import as_path
from reczero_jax.settings import Settings


def format_table(results: dict) -> str:
    """A fixed-width table of MAE / RMSE per predictor."""
    rows = [f"{'predictor':<18} {'MAE':>7} {'RMSE':>7}"]
    for name, m in results["baselines"].items():
        rows.append(f"{name:<18} {m['mae']:7.4f} {m['rmse']:7.4f}")
    if "bayes_optimal" in results:
        b = results["bayes_optimal"]
        rows.append(f"{'bayes_optimal':<18} {b['mae']:7.4f} {b['rmse']:7.4f}  (expected floor)")
    return "\n".join(rows)


def run(settings: Settings) -> dict:
    """Loads the data, fits and scores all baselines, prints a table and writes
    ``workdir/results.json``; returns the same dict. Reads the raw files (or the synthetic
    world) even when ``data.tfds_data_dir`` is set: the baselines fit the ratings table."""
    t0 = time.perf_counter()
    data = load_raw(settings.data, splits=("test",))
    log.info("%s", data.source.report.summary())
    results = baseline_results(data, settings.baselines, settings.seed, settings.data.source)
    results["data"]["split"] = settings.data.split
    results["seconds"] = round(time.perf_counter() - t0, 2)
    print(format_table(results))
    out = as_path(settings.workdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    log.info("wrote %s", out / "results.json")
    return results
