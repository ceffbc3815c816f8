"""The builder's one rule for where a phase's weights come from (``plan_phase``), and the
builder itself: a scratch model with a tokenizer trained on the given corpus."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

from reczero_jax.checkpointing import Checkpointer
from reczero_jax.config_parsing import ConfigError
from reczero_jax.engine import PhasePlan, WeightSource, build_engine, plan_phase
from reczero_jax.settings import default_config, load_settings


def _steps(directory, *steps):
    with Checkpointer(directory, save_every=1, keep_latest=10) as ckpt:
        for step in steps:
            ckpt.save(step, {"params": {"w": jnp.zeros(2)}}, {})
    return directory


def test_plan_phase_precedence(tmp_path):
    own, sft, prev = tmp_path / "own", tmp_path / "sft", tmp_path / "prev"
    hf = tmp_path / "hf"
    hf.mkdir()
    # 5. nothing given: scratch; 4. hf_dir
    assert plan_phase(own, [], "", "") == PhasePlan(WeightSource("scratch"), None)
    assert plan_phase(own, [], "", str(hf)) == PhasePlan(WeightSource("hf", hf), None)
    with pytest.raises(ConfigError, match="config.model.hf_dir"):
        plan_phase(own, [], "", str(tmp_path / "nope"))
    # 3. resume_from: its latest step, or one step folder; an error when it holds none
    _steps(prev, 3, 6)
    assert plan_phase(own, [], str(prev), str(hf)).initial == WeightSource("resume_from", prev, 6)
    assert plan_phase(own, [], str(prev / "3"), "").initial == WeightSource("resume_from", prev, 3)
    with pytest.raises(ConfigError, match="config.checkpoint.resume_from"):
        plan_phase(own, [], str(tmp_path / "empty"), str(hf))
    # 2. an earlier phase of the run wins over resume_from and hf_dir (the latest phase first)
    assert plan_phase(own, [sft], str(prev), str(hf)).initial.kind == "resume_from"  # no steps yet
    _steps(sft, 2)
    assert plan_phase(own, [prev, sft], str(prev), str(hf)).initial == WeightSource("phase", sft, 2)
    # 1. the phase's own checkpoint: it resumes, and its initial weights stay rule 2's
    _steps(own, 4)
    plan = plan_phase(own, [sft], str(prev), str(hf))
    assert plan == PhasePlan(WeightSource("phase", sft, 2), resume_step=4)
    assert plan_phase(None, [own], "", "").initial == WeightSource("phase", own, 4)


def test_scratch_engine_trains_its_tokenizer_on_the_corpus_once(tmp_path):
    c = default_config()
    c.workdir = str(tmp_path)
    c.model.scratch.tokenizer_vocab_size = 300
    settings = load_settings(c)
    calls = []

    def corpus():
        calls.append(1)
        return ["loveaction hatedrama okayscifi"] * 50

    engine = build_engine(settings, corpus)
    assert calls == [1] and (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    assert len(engine.tokenizer.encode("loveaction", add_special_tokens=False)) == 1
    assert engine.model_config.vocab_size % 64 == 0
    assert engine.model_config.vocab_size >= len(engine.tokenizer)
    build_engine(settings, corpus)  # the workdir's tokenizer is reused
    assert calls == [1]
    sampler = engine.sampler(greedy=True, max_new_tokens=5)
    assert sampler.spec.max_new_tokens == 5 and sampler.spec.method.temperature == 1.0


def test_cudnn_attention_on_cpu_is_a_clear_config_error(tmp_path):
    config = default_config()
    config.workdir = str(tmp_path)
    config.model.dtype = "bfloat16"
    config.model.attention = "cudnn"
    settings = load_settings(config)  # valid as a config; the devices decide
    with pytest.raises(ConfigError, match=r"config\.model\.attention: 'cudnn' runs on NVIDIA"):
        build_engine(settings)
