"""predictions.jsonl from every evaluation, and mode=predict on a tiny trained run: the
same prompt, sampler and parser as the evaluation, for a rating of the data and for a
JSONL request."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import pytest

from reczero_jax.config_parsing import ConfigError
from reczero_jax.data.loader import load_data
from reczero_jax.main import run as main_run
from reczero_jax.modes.predict import find_rating
from reczero_jax.rl.evaluation import read_predictions
from reczero_jax.rl.run import run
from reczero_jax.settings import default_config, load_settings
from tests.rl.test_training import tiny_settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny SFT run (2 steps, then a strict evaluation of 8 test examples)."""
    workdir = tmp_path_factory.mktemp("run")
    settings = tiny_settings(workdir, mode="sft")
    return settings, run(settings)


def _predict_settings(run_dir, out, **predict):
    c = default_config()
    c.mode = "predict"
    c.workdir = str(out)
    c.predict.run_dir = str(run_dir)
    c.predict.update(predict)
    return load_settings(c, num_devices=8)


def test_every_evaluation_writes_its_predictions(trained):
    settings, results = trained
    records = read_predictions(settings.workdir)
    assert len(records) == settings.eval.num_examples and {r["model"] for r in records} == {"sft"}
    # the records are the evaluation: their mean errors are its strict and lenient MAE
    strict = np.mean([r["strict_error"] for r in records])
    assert strict == pytest.approx(results["sft"]["mae"], abs=1e-6)
    lenient = np.mean([r["lenient_error"] for r in records])
    assert lenient == pytest.approx(results["sft"]["lenient_mae"], abs=1e-6)
    for r in records:
        assert set(r["sections"]) == {"analyze user", "analyze item", "match", "rate"}
        assert r["valid"] == (r["predicted"] is not None)
        assert r["split"] == "test" and r["answer"] is not None
    # the run directory keeps its resolved config and its log
    config = json.loads((pathlib.Path(settings.workdir) / "config.json").read_text())
    assert config["sft"]["steps"] == settings.sft.steps and config["mode"] == "sft"
    assert "sft: weights from" in (pathlib.Path(settings.workdir) / "log.txt").read_text()


def test_predict_one_rating_of_the_data_gives_the_evaluation_answer(trained, tmp_path, capsys):
    settings, _ = trained
    record = read_predictions(settings.workdir)[0]
    out = main_run(_predict_settings(settings.workdir, tmp_path, user=record["user"],
                                     item=record["item"]))  # fmt: skip
    got = out["predictions"][0]
    assert got["answer"] == record["answer"] and got["predicted"] == record["predicted"]
    assert got["rating"] == record["rating"] and got["facts"]["history"]
    printed = capsys.readouterr().out
    assert f"user {record['user']}, item {record['item']}" in printed
    assert "[analyze user]" in printed and "[rate]" in printed


def test_predict_a_jsonl_request_builds_the_training_prompt(trained, tmp_path):
    settings, _ = trained
    record = read_predictions(settings.workdir)[1]
    e = find_rating(load_data(settings.data), record["user"], record["item"])
    request = {
        "user": e.user_id,
        "history": [dataclasses.asdict(h) for h in e.user_history],
        "item": {
            "id": e.item_id, "title": e.item_title, "info": e.item_info,
            "reviews": [dataclasses.asdict(r) for r in e.item_history],
            "avg_rating": e.item_avg_rating, "num_ratings": e.item_num_ratings,
        },
        "user_avg_rating": e.user_avg_rating,
        "user_num_ratings": e.user_num_ratings,
    }  # fmt: skip
    path = tmp_path / "requests.jsonl"
    path.write_text(json.dumps(request) + "\n" + json.dumps({**request, "rating": 2}) + "\n")
    out_file = tmp_path / "answers.jsonl"
    main_run(_predict_settings(settings.workdir, tmp_path, input=str(path), output=str(out_file)))
    answers = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert len(answers) == 2 and answers[0]["answer"] == record["answer"]
    assert answers[0]["rating"] is None and answers[0]["strict_error"] is None
    assert answers[1]["rating"] == 2 and answers[1]["answer"] == record["answer"]


def test_predict_errors_name_what_is_wrong(trained, tmp_path):
    settings, _ = trained
    with pytest.raises(ConfigError, match="no user 'nobody'"):
        main_run(_predict_settings(settings.workdir, tmp_path, user="nobody", item="x"))
    with pytest.raises(ConfigError, match="config.json"):
        main_run(_predict_settings(tmp_path, tmp_path, user="a", item="b"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"item": {"title": "x"}, "history": [{"title": "y"}]}\n')
    with pytest.raises(ConfigError, match="line 1: every history entry"):
        main_run(_predict_settings(settings.workdir, tmp_path, input=str(bad)))
    with pytest.raises(ConfigError, match="predict.input"):
        _predict_settings(settings.workdir, tmp_path)  # neither a rating nor a request file
