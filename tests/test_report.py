"""mode=report on a hand-written run directory: the numbers of report.md against hand
computations, the example picks, the PNG files, compare runs and the errors."""

from __future__ import annotations

import json
import pathlib

import pytest

from reczero_jax.config_parsing import ConfigError
from reczero_jax.metrics import gap_closed
from reczero_jax.modes import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GRPO_PLOTS = (
    "grpo_reward",
    "grpo_mae",
    "grpo_format_valid",
    "grpo_response_length",
    "grpo_entropy",
    "grpo_zero_std_groups",
)


def metrics_rows() -> list[dict]:
    rows = []
    for step in range(1, 13):  # SFT: 12 points (smoothed)
        rows.append({"step": step, "time": 100.0 + step, "sft/loss": 4.0 / step,
                     "sft/policy/entropy": 2.0 / step})  # fmt: skip
    rows.append({"step": 0, "time": 200.0, "final/sft_mae": 0.8, "final/sft_rmse": 1.0})
    for step in range(1, 13):  # GRPO: no KL term, so no grpo/policy/kl
        rows.append({
            "step": step, "time": 300.0 + step, "grpo/reward/mean": 0.1 * step,
            "grpo/batch/mae": 1.2 - 0.05 * step, "grpo/format/valid_frac": 0.9,
            "grpo/response/length_mean": 80.0 + step, "grpo/policy/entropy": 0.5,
            "grpo/groups/frac_reward_zero_std": 0.02 * step,
        })  # fmt: skip
        if step % 6 == 0:  # GRPO's validation
            rows.append({"step": step, "time": 300.5 + step, "eval/mae": 1.0 - 0.1 * step / 6,
                         "eval/format_valid_rate": 1.0,
                         "eval/mean_response_tokens": 81.0})  # fmt: skip
    rows.append({"step": 0, "time": 400.0, "final/grpo_mae": 0.65, "final/grpo_rmse": 0.9})
    return rows


RESULTS = {
    "mode": "recone",
    "baselines": {
        "global_mean": {"mae": 1.1, "rmse": 1.3},
        "mf": {"mae": 0.7, "rmse": 0.87},
        "bias": {"mae": 0.85, "rmse": 1.05},
        "teacher": {"mae": 0.9, "rmse": 1.1},
    },
    "bayes_optimal": {"mae": 0.4, "rmse": 0.6},
    "teacher": {"mae": 0.9, "rmse": 1.1},
    "sft": {"mae": 0.8, "rmse": 1.0, "format_valid_rate": 0.95, "num_examples": 5},
    "grpo": {"mae": 0.65, "rmse": 0.9, "format_valid_rate": 0.8, "num_examples": 5},
    "seconds": {"sft_s": 120.0, "eval_sft_s": 6.0, "grpo_s": 300.0, "total": 426.0},
}


def record(model, user, error, valid=True, rating=4.0):
    predicted = rating - error if valid else None
    return {
        "model": model, "split": "test", "user": user, "item": f"i_{user}", "rating": rating,
        "predicted": predicted, "valid": valid, "strict_error": error,
        "lenient_error": error if valid else 0.0,
        "sections": {"analyze user": f"likes of {user}", "analyze item": "item facts",
                     "match": "fits", "rate": "" if not valid else f"{predicted:g}"},
        "answer": f"<analyze user> likes of {user} </analyze user> rambling without a rating",
    }  # fmt: skip


PREDICTIONS = [
    record("sft", "s_perfect", 0.0),  # not shown: grpo's answers are preferred
    record("sft", "s_invalid", 1.0, valid=False),
    record("grpo", "g_mid", 1.0),
    record("grpo", "g_good", 0.0),
    record("grpo", "g_bad", 3.0),
    record("grpo", "g_invalid", 2.0, valid=False),
    record("grpo", "g_good_too", 0.0),  # ties with g_good: the earlier one wins
]


def make_run(root: pathlib.Path, name="run_a", predictions=True, results=RESULTS) -> pathlib.Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics_rows()))
    if results is not None:
        (run / "results.json").write_text(json.dumps(results, indent=2))
    (run / "config.json").write_text(json.dumps({"mode": "recone", "seed": 3,
                                                 "grpo": {"steps": 12}}))  # fmt: skip
    if predictions:
        (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PREDICTIONS))
    return run


@pytest.fixture
def few_plots(monkeypatch):
    """Two of the plots only (drawing is the slow part): the MAE one and the SFT loss."""
    monkeypatch.setattr(report, "PLOTS", tuple(p for p in report.PLOTS if p.name in FEW))


FEW = ("sft_loss", "grpo_mae")


def assert_png(path: pathlib.Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 5000, (path, len(data))


# --------------------------------------------------------------------------- pure parts


def test_series_sorts_keeps_the_last_value_of_a_step_and_skips_nulls():
    rows = [
        {"step": 2, "a": 1.0},
        {"step": 1, "a": 5.0},
        {"step": 3, "a": None},
        {"step": 2, "a": 7.0},  # logged again after a resume
        {"step": 4, "b": 1.0},
    ]
    assert report.series(rows, "a") == ([1, 2], [5.0, 7.0])
    assert report.series(rows, "missing") == ([], [])


def test_smooth_is_a_centred_moving_average_with_shorter_windows_at_the_ends():
    assert report.smooth([1, 2, 3, 4, 5], 3) == pytest.approx([1.5, 2, 3, 4, 4.5])
    assert report.smooth([1, 5], 3) == [1, 5]
    assert report.smoothing_window(9) == 1
    assert report.smoothing_window(30) == 3
    assert report.smoothing_window(100) == 5
    assert report.smoothing_window(10_000) == 51


def test_gap_closed_and_final_table():
    assert gap_closed(0.65, 0.9, 0.4) == pytest.approx(0.5)
    assert gap_closed(1.0, 0.9, 0.4) == pytest.approx(-0.2)
    assert gap_closed(0.5, 0.4, 0.4) is None  # no gap to close
    rows = report.final_table(RESULTS)
    assert [(r["name"], r["kind"]) for r in rows] == [
        ("sft", "model"), ("grpo", "model"), ("teacher", "teacher"), ("Bayes floor", "bayes"),
        ("mf", "baseline"), ("bias", "baseline"), ("global_mean", "baseline"),
    ]  # fmt: skip
    assert rows[0]["gap_closed"] == pytest.approx((0.9 - 0.8) / (0.9 - 0.4))
    assert rows[1]["gap_closed"] == pytest.approx(0.5)
    assert rows[1]["valid"] == 0.8
    assert all(r["gap_closed"] is None for r in rows[2:])
    # no Bayes floor (real data): no gap; the teacher comes from the baselines
    no_floor = {k: v for k, v in RESULTS.items() if k not in ("bayes_optimal", "teacher")}
    rows = report.final_table(no_floor)
    assert all(r["gap_closed"] is None for r in rows)
    assert [r["name"] for r in rows if r["kind"] == "teacher"] == ["teacher"]


def test_results_from_metrics_reads_the_final_keys():
    assert report.results_from_metrics(metrics_rows()) == {
        "sft": {"mae": 0.8, "rmse": 1.0},
        "grpo": {"mae": 0.65, "rmse": 0.9},
    }


def test_pick_examples_and_the_model_shown():
    assert report.example_model(PREDICTIONS) == "grpo"
    assert report.example_model([r for r in PREDICTIONS if r["model"] == "sft"]) == "sft"
    assert report.example_model([{**r, "model": "eval"} for r in PREDICTIONS[:2]]) == "eval"
    grpo = [r for r in PREDICTIONS if r["model"] == "grpo"]
    picks = report.pick_examples(grpo)
    assert (picks["good"]["user"], picks["bad"]["user"], picks["invalid"]["user"]) == (
        "g_good", "g_bad", "g_invalid"
    )  # fmt: skip
    none_invalid = report.pick_examples([r for r in grpo if r["valid"]])
    assert none_invalid["invalid"] is None
    assert report.pick_examples([]) == {"good": None, "bad": None, "invalid": None}


# --------------------------------------------------------------------------- the report


def test_write_report(tmp_path):
    run = make_run(tmp_path)
    path = report.write_report(run)
    assert pathlib.Path(path) == run / "report.md"
    for name in ("sft_loss", "sft_entropy", *GRPO_PLOTS):
        assert_png(run / "report" / f"{name}.png")
    assert not (run / "report" / "grpo_kl.png").exists()  # no KL term: no plot
    text = path.read_text()

    assert text.startswith("# Run report: run_a\n")
    assert "- mode: `recone`" in text
    assert "| `seed` | `3` |" in text  # from config.json
    # the final table: (teacher - model) / (teacher - bayes) = 0.1 / 0.5 and 0.25 / 0.5
    assert "| **sft** | model | 0.8000 | 1.0000 | 0.950 | 20.0% |" in text
    assert "| **grpo** | model | 0.6500 | 0.9000 | 0.800 | 50.0% |" in text
    assert "| teacher | teacher | 0.9000 | 1.1000 |  |  |" in text
    assert "| Bayes floor | bayes | 0.4000 | 0.6000 |  |  |" in text
    assert text.index("| mf |") < text.index("| bias |") < text.index("| global_mean |")
    assert text.count("| teacher |") == 1  # not again among the baselines
    assert "Strict metrics on 5 examples" in text
    # timings
    assert "| sft | 120.0 | 2.0 |" in text and "| eval (sft) | 6.0 | 0.1 |" in text
    assert "| total | 426.0 | 7.1 |" in text
    # plots, by relative path; the missing one is named
    assert "![GRPO strict MAE](report/grpo_mae.png)" in text
    assert "![SFT loss (cross-entropy on the traces)](report/sft_loss.png)" in text
    assert "grpo_kl (grpo/policy/kl)" in text
    assert "## Compared runs" not in text
    # examples: grpo's, the right records, the sections or the raw answer
    examples = text[text.index("## Example reasonings") :]
    assert "Model `grpo`: 5 answers in predictions.jsonl, 1 invalid." in examples
    good = examples[examples.index("### A good one") : examples.index("### A bad one")]
    assert "user `g_good`, item `i_g_good`" in good
    assert "true rating 4, predicted 4, strict error 0.00" in good
    assert "```text\nanalyze user: likes of g_good\nanalyze item: item facts\nmatch: fits\n" in good
    bad = examples[examples.index("### A bad one") : examples.index("### An invalid one")]
    assert "user `g_bad`" in bad and "predicted 1, strict error 3.00" in bad
    invalid = examples[examples.index("### An invalid one") :]
    assert "user `g_invalid`" in invalid and "predicted none" in invalid
    assert "rambling without a rating" in invalid  # the raw answer
    assert "s_perfect" not in text

    # deterministic: a second report is the same, byte for byte
    before = {p.name: p.read_bytes() for p in (run / "report").iterdir()}
    report.write_report(run)
    assert path.read_text() == text
    assert {p.name: p.read_bytes() for p in (run / "report").iterdir()} == before


def test_missing_predictions_and_results_are_reported_not_fatal(tmp_path, few_plots):
    run = make_run(tmp_path, predictions=False, results=None)
    out = tmp_path / "elsewhere"
    path = report.write_report(run, out_dir=out)
    assert pathlib.Path(path) == out / "report.md"
    assert not (run / "report.md").exists()
    assert_png(out / "report" / "grpo_mae.png")
    text = path.read_text()
    assert "No predictions.jsonl in this run directory" in text
    assert "predictions.jsonl: absent" in text and "results.json: absent" in text
    assert "`final/` metrics of metrics.jsonl" in text
    assert "| **grpo** | model | 0.6500 | 0.9000 |  |" in text  # from final/ keys
    assert "## Timings" not in text


def test_examples_without_invalid_or_valid_answers():
    valid_only = [r for r in PREDICTIONS if r["model"] == "grpo" and r["valid"]]
    text = "\n".join(report.examples_lines(valid_only))
    assert "### A good one" in text and "None of the 4 answers was invalid." in text
    text = "\n".join(report.examples_lines([r for r in PREDICTIONS if not r["valid"]]))
    assert "Model `grpo`: 1 answer in" in text and "No valid answer" in text
    assert "### An invalid one (no valid rating)" in text
    assert "predictions.jsonl holds no records" in "\n".join(report.examples_lines([]))


def test_compare_overlays_runs_and_lists_their_models(tmp_path, few_plots):
    a = make_run(tmp_path, "run_a")
    other = {**RESULTS, "grpo": {**RESULTS["grpo"], "mae": 0.55}}
    b = make_run(tmp_path, "run_b", predictions=False, results=other)
    path = report.write_report(a, compare=[b], out_dir=tmp_path / "cmp")
    for name in FEW:
        assert_png(tmp_path / "cmp" / "report" / f"{name}.png")
    text = path.read_text()
    compared = text[text.index("## Compared runs") : text.index("## Timings")]
    assert "| run | model | MAE | RMSE | valid | gap closed |" in compared
    assert "| run_a | grpo | 0.6500 | 0.9000 | 0.800 | 50.0% |" in compared
    assert "| run_b | grpo | 0.5500 | 0.9000 | 0.800 | 70.0% |" in compared  # 0.35 / 0.5
    assert "| run_b | sft |" in compared
    assert "one colour per run" in text
    assert report.run_labels(["/x/run", "/y/run"]) == ["/x/run", "/y/run"]  # names clash


def test_a_folder_that_is_not_a_run_gives_a_config_error_naming_it(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=f"{missing}.*does not exist.*metrics.jsonl"):
        report.write_report(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=f"{empty} holds neither metrics.jsonl nor results"):
        report.write_report(empty)
    run = make_run(tmp_path)
    with pytest.raises(ConfigError, match=f"report.compare: {missing}"):
        report.write_report(run, compare=[missing])
    assert not (run / "report.md").exists()  # checked before anything is written


def test_mode_report_through_main(tmp_path, few_plots):
    from reczero_jax.main import run as main_run
    from reczero_jax.settings import default_config, load_settings

    a = make_run(tmp_path, "run_a")
    b = make_run(tmp_path, "run_b", predictions=False)
    config = default_config()
    config.mode = "report"
    config.workdir = str(a)
    config.report.compare = f" {b}, "
    out = main_run(load_settings(config))
    assert out["mode"] == "report"
    assert pathlib.Path(out["report"]) == a / "report.md"
    assert len(out["plots"]) == len(FEW) and all(pathlib.Path(p).is_file() for p in out["plots"])
    assert "| run_b | grpo |" in (a / "report.md").read_text()

    config.workdir = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="workdir: .*nowhere"):
        main_run(load_settings(config))


def test_a_gs_run_directory(tmp_path, monkeypatch, few_plots):
    from reczero_jax.paths import as_path
    from tests.fixtures.fake_gcs import install_fake_gcs

    gcs = install_fake_gcs(tmp_path / "fake_gcs", monkeypatch)
    local = make_run(tmp_path, "run_a")
    run = as_path("gs://fake-bucket/runs/run_a")
    run.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.jsonl", "results.json", "predictions.jsonl"):
        (run / name).write_text((local / name).read_text())
    path = report.write_report("gs://fake-bucket/runs/run_a")
    assert str(path) == "gs://fake-bucket/runs/run_a/report.md"
    stored = gcs.root / "fake-bucket" / "runs" / "run_a"
    assert "| **grpo** | model | 0.6500 |" in (stored / "report.md").read_text()
    assert_png(stored / "report" / "grpo_mae.png")
