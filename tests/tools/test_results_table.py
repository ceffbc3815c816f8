"""The results table: numbers read from results.json, the gap share and the seed row."""

import json

import pytest

from reczero_jax.tools.results_table import main, row_of, table


def _results(grpo, sft=0.96, mf=0.72, seconds=300.0):
    return {
        "teacher": {"mae": 0.9},
        "bayes_optimal": {"mae": 0.4},
        "sft": {"mae": sft},
        "grpo": {"mae": grpo},
        "baselines": {"mf": {"mae": mf}},
        "seconds": {"total": seconds},
    }


def test_row_reads_the_gap_share_and_the_mf_comparison():
    row = row_of(_results(0.65))
    assert row["gap closed"] == pytest.approx((0.9 - 0.65) / (0.9 - 0.4))
    assert row["beats MF"] is True and row["GRPO MAE"] == 0.65
    assert row_of(_results(0.75))["beats MF"] is False
    assert row_of({"grpo": {"mae": 0.7}})["gap closed"] is None  # no teacher / Bayes


def test_seed_row_has_mean_and_spread():
    text = table([("s0", _results(0.65)), ("s1", _results(0.75))], seeds=True)
    last = text.splitlines()[-1]
    assert last.startswith("| mean (min .. max) |")
    assert "0.7000 (0.6500 .. 0.7500)" in last and "1 of 2" in last
    assert "0.400 (0.300 .. 0.500)" in last  # the gap shares
    untimed = table([("s0", _results(0.65))], seconds=False)
    assert "seconds" not in untimed and untimed.splitlines()[-1].endswith("| yes |")


def test_cli_reads_workdirs_and_names_a_missing_one(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps(_results(0.7)))
    assert main([f"run a={tmp_path / 'a'}"]) == 0
    assert "| run a | 0.9600 | 0.7000 | 0.7200 | 0.400 | yes | 300 |" in capsys.readouterr().out
    assert main([f"b={tmp_path / 'b'}"]) == 2
    assert "results.json does not exist" in capsys.readouterr().err
