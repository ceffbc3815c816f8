"""Prepared TFDS datasets read back through ``load_data``: examples EQUAL to the raw ones, in
the same order, with identical prompts; a whole run on them bitwise equal to the run on the
raw data; lazy reading; ``mode=prepare`` on the command line and its two errors."""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Sequence

import jax
import numpy as np
import pytest

from reczero_jax.baselines.evaluate import FITTED, baseline_results
from reczero_jax.data.data_config import BaselinesConfig, DataConfig, PromptConfig, SyntheticConfig
from reczero_jax.data.errors import DataError
from reczero_jax.data.loader import load_data, load_raw
from reczero_jax.data.prompt_set import PromptSet, batch_indices
from reczero_jax.data.prompts import build_prompt
from reczero_jax.data.splits import SPLIT_NAMES
from reczero_jax.data.tfds_builder import PreparedExamples, prepare
from reczero_jax.engine import build_engine, plan_phase
from reczero_jax.modes import prepare as prepare_mode
from reczero_jax.rl.evaluation import evaluate
from reczero_jax.rl.grpo import rollout
from reczero_jax.rl.run import reward_function, run, scratch_corpus
from reczero_jax.text.tiny_tokenizer import build_tiny_tokenizer
from reczero_jax.text.tokenizer import load_tokenizer
from tests.data import sample_files
from tests.rl.test_training import final_params, tiny_settings
from tests.test_main_cli import _run

SMALL = SyntheticConfig(num_users=40, num_items=20, interactions_per_user=8)
FAST = BaselinesConfig(mf_epochs=2)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(build_tiny_tokenizer(tmp_path_factory.mktemp("tok")))


def _read_back_equal(cfg: DataConfig, tokenizer) -> tuple:
    """Prepares ``cfg``, checks every split read back equals the raw examples (in order)
    and gives identical prompt ids; returns (prepared, raw) LoadedData."""
    prepare(cfg)
    got, raw = load_data(cfg), load_raw(cfg)
    for split in SPLIT_NAMES:
        examples = got.examples[split]
        assert isinstance(examples, PreparedExamples)  # read from the dataset, lazily
        read = list(examples)
        assert len(read) == len(raw.examples[split]) > 0
        assert read == raw.examples[split]  # dataclass ==: exact floats, same order
        for prompt_cfg in (PromptConfig(), PromptConfig(mode="raw", variant="rating_only")):
            for a, b in zip(read, raw.examples[split]):
                assert (
                    build_prompt(a, tokenizer, prompt_cfg).token_ids
                    == build_prompt(b, tokenizer, prompt_cfg).token_ids
                )
    assert examples[-1] == raw.examples[split][-1] and examples[:2] == raw.examples[split][:2]
    assert got.counts() == raw.counts()
    return got, raw


def test_prepared_synthetic_reads_back_equal_and_complete(tmp_path, tokenizer):
    cfg = DataConfig(synthetic=SMALL, tfds_data_dir=str(tmp_path / "tfds"))
    got, raw = _read_back_equal(cfg, tokenizer)
    # the averages are not float32-representable: a float32 record would not compare equal
    averages = [e.user_avg_rating for e in raw.examples["train"]]
    assert any(float(np.float32(a)) != a for a in averages)
    # the world is drawn again from the config: the LoadedData is complete
    assert got.world is not None and got.source is not None
    np.testing.assert_array_equal(got.split, raw.split)
    assert baseline_results(got, FAST, 0, "synthetic") == baseline_results(
        raw, FAST, 0, "synthetic"
    )


def test_prepared_file_source_reads_back_equal(tmp_path, tokenizer):
    path, meta = sample_files.write_amazon(tmp_path, "amazon2018")
    cfg = DataConfig(
        source="amazon2018",
        path=str(path),
        meta_path=str(meta),
        tfds_data_dir=str(tmp_path / "tfds"),
    )
    got, raw = _read_back_equal(cfg, tokenizer)
    assert got.source is None and got.split is None and got.world is None
    # without the ratings table only the prompt-number predictors are scored, and said so
    prepared = baseline_results(got, FAST, 0, "amazon2018")
    full = baseline_results(raw, FAST, 0, "amazon2018")
    assert set(prepared["baselines"]) == {"history_user_avg", "history_item_avg", "teacher"}
    assert prepared["baselines"] == {k: full["baselines"][k] for k in prepared["baselines"]}
    assert all(name in prepared["baselines_note"] for name in FITTED)
    assert "mode=baselines" in prepared["baselines_note"] and "baselines_note" not in full
    assert prepared["data"] == full["data"]


def test_movielens_without_meta_reads_back_equal(tmp_path, tokenizer):
    path, _ = sample_files.write_movielens100k(tmp_path)
    cfg = DataConfig(source="movielens100k", path=str(path), tfds_data_dir=str(tmp_path / "t"))
    _read_back_equal(cfg, tokenizer)


def test_not_prepared_is_a_data_error_naming_the_key(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = DataConfig(synthetic=SMALL, tfds_data_dir=str(empty))
    with pytest.raises(DataError, match=r"config\.data\.tfds_data_dir: .*--config\.mode=prepare"):
        load_data(cfg)
    assert list(empty.iterdir()) == []  # looking wrote nothing
    prepare(cfg)
    other = dataclasses.replace(cfg, history_len=3)  # another data section: not prepared
    with pytest.raises(DataError, match="tfds_data_dir"):
        load_data(other)


class Counting(Sequence):
    """A data source that counts the records read."""

    def __init__(self, source):
        self.source, self.reads = source, collections.Counter()

    def __len__(self):
        return len(self.source)

    def __getitem__(self, k):
        self.reads[k] += 1
        return self.source[k]


def test_training_reads_only_the_records_it_uses(tmp_path):
    """PromptSets read nothing when made; GRPO rollouts read each batch example once;
    an evaluation of a sample reads only the sample."""
    settings = tiny_settings(tmp_path / "w")
    settings = dataclasses.replace(
        settings, data=dataclasses.replace(settings.data, tfds_data_dir=str(tmp_path / "tfds"))
    )
    prepare(settings.data)
    data = load_data(settings.data)
    for examples in data.examples.values():
        examples.source = Counting(examples.source)
    raw = load_raw(settings.data)  # the scratch tokenizer's corpus, not counted
    engine = build_engine(settings, corpus=lambda: scratch_corpus(raw, settings))
    splits = {
        k: PromptSet(v, engine.tokenizer, settings.data.prompt) for k, v in data.examples.items()
    }
    validation = splits["validation"].sample(8, settings.seed)
    assert all(not v.source.reads for v in data.examples.values())

    params = engine.weights(plan_phase(None, [], "", "").initial)
    reward_fn = reward_function(settings, engine)
    train, used = splits["train"], set()
    for step in range(2):
        idx = batch_indices(len(train), settings.grpo.prompts_per_step, step, settings.seed)
        drawn = rollout(
            engine.sampler(greedy=False), params, train.rows(idx), train.targets_of(idx),
            train.fallbacks_of(idx), reward_fn, settings.grpo, jax.random.key(step),
        )  # fmt: skip
        assert drawn.batch.resp.shape[0] == len(idx)
        used |= set(idx.tolist())
    reads = data.examples["train"].source.reads
    assert set(reads) == used and set(reads.values()) == {1}
    assert len(used) < len(train)  # a fraction of the split

    result = evaluate(engine.sampler(greedy=True), params, validation, reward_fn, 8)
    assert result["num_examples"] == 8
    reads = data.examples["validation"].source.reads
    assert len(reads) == 8 < len(splits["validation"]) and set(reads.values()) == {1}
    assert not data.examples["test"].source.reads


def test_recone_on_prepared_data_is_bitwise_the_raw_run(tmp_path):
    raw = tiny_settings(tmp_path / "raw", mode="recone")
    on_tfds = dataclasses.replace(
        raw,
        workdir=str(tmp_path / "tfds_run"),
        data=dataclasses.replace(raw.data, tfds_data_dir=str(tmp_path / "tfds")),
    )
    prepared = prepare_mode.run(dataclasses.replace(on_tfds, mode="prepare"))
    assert prepared["examples"] == {k: len(v) for k, v in load_raw(raw.data).examples.items()}
    r_raw, r_tfds = run(raw), run(on_tfds)
    jax.tree.map(np.testing.assert_array_equal, final_params(raw), final_params(on_tfds))
    for key in ("sft", "grpo", "baselines", "bayes_optimal", "teacher", "data", "sft_traces"):
        timeless = [{k: v for k, v in r[key].items() if k != "seconds"} for r in (r_raw, r_tfds)]
        assert timeless[0] == timeless[1], key


def _prepare_args(tfds_dir, workdir) -> list[str]:
    return [
        "--config=configs/baselines.py:small",
        "--config.mode=prepare",
        f"--config.data.tfds_data_dir={tfds_dir}",
        f"--config.workdir={workdir}",
        "--config.data.synthetic.num_users=40",
        "--config.data.synthetic.num_items=20",
        "--config.data.synthetic.interactions_per_user=8",
    ]


def test_mode_prepare_on_the_command_line(tmp_path):
    tfds_dir, workdir = tmp_path / "tfds", tmp_path / "work"
    result = _run(*_prepare_args(tfds_dir, workdir))
    assert result.returncode == 0, result.stderr
    expected = load_raw(DataConfig(synthetic=SMALL)).examples
    for split in SPLIT_NAMES:
        assert f"  {split:<10} {len(expected[split]):>9,} examples" in result.stdout
    assert not workdir.exists()  # the dataset and nothing else
    assert [p.name for p in tfds_dir.iterdir()] == ["rec_zero_examples"]
    files = {p: p.stat().st_mtime_ns for p in tfds_dir.rglob("*") if p.is_file()}
    assert any(p.name.endswith(".array_record-00000-of-00001") for p in files)
    meta = next(p for p in files if p.name == "metadata.json")
    assert json.loads(meta.read_text())["counts"]["test_examples"] == len(expected["test"])
    again = _run(*_prepare_args(tfds_dir, workdir))  # prepared once: reused, not rewritten
    assert (
        again.returncode == 0 and again.stdout.splitlines()[-3:] == result.stdout.splitlines()[-3:]
    )
    assert files == {p: p.stat().st_mtime_ns for p in tfds_dir.rglob("*") if p.is_file()}


def _one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_prepare_without_tfds_data_dir_is_a_config_error(tmp_path):
    result = _run("--config=configs/baselines.py", "--config.mode=prepare")
    _one_line_error(result, "config.data.tfds_data_dir", "mode 'prepare'")


def test_training_on_an_unprepared_tfds_data_dir_says_to_prepare(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run(
        "--config=configs/demo.py",
        f"--config.workdir={tmp_path / 'work'}",
        f"--config.data.tfds_data_dir={empty}",
    )
    _one_line_error(result, "config.data.tfds_data_dir", str(empty), "--config.mode=prepare")
    assert list(empty.iterdir()) == []
    assert not (tmp_path / "work").exists()
