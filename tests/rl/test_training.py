"""Whole training phases on a tiny synthetic run: sharded == unsharded, exact resume,
trace sources, evaluation and the paper configs' lowering."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import jax
import numpy as np
import pytest

from reczero_jax.config_parsing import ConfigError
from reczero_jax.observe import MetricWriter
from reczero_jax.rl import loops, traces
from reczero_jax.rl.evaluation import evaluate
from reczero_jax.rl.setup import batch_indices, initial_params, prepare_run
from reczero_jax.settings import default_config, load_settings

ROOT = pathlib.Path(__file__).resolve().parents[2]


def tiny_settings(workdir, mesh=(1, 1, 1), **grpo):
    c = default_config()
    c.mode = "recone"
    c.workdir = str(workdir)
    c.data.synthetic.num_users = 48
    c.data.synthetic.num_items = 24
    c.data.synthetic.interactions_per_user = 8
    c.data.history_len = 3
    c.data.item_history_len = 1
    c.data.prompt.mode = "raw"
    c.data.prompt.raw_template = "{inputs}\n"
    c.model.scratch.update(
        dict(
            hidden_size=32,
            intermediate_size=64,
            num_layers=1,
            num_heads=4,
            num_kv_heads=2,
            head_dim=8,
            tokenizer_vocab_size=512,
        )
    )
    c.mesh.shape = mesh
    c.sampling.num_samples = 2
    c.sampling.max_new_tokens = 16
    c.sampling.prompt_buckets = (256,)
    c.data.prompt.max_prompt_tokens = 256
    c.sft.num_traces = 32
    c.sft.batch_size = 8
    c.sft.steps = 2
    c.sft.max_response_tokens = 16
    c.sft.optim.learning_rate = 1e-3
    c.grpo.steps = 3
    c.grpo.prompts_per_step = 8
    c.grpo.micro_groups = 4
    c.grpo.entropy_coef = 0.01  # a gradient even when every reward in a group is equal
    c.grpo.eval_every = 0
    c.grpo.optim.learning_rate = 1e-3
    c.eval.batch_size = 8
    c.checkpoint.save_every = 2
    c.grpo.update(grpo)
    return load_settings(c)


def grpo_params(settings):
    run = prepare_run(settings)
    params = initial_params(run, jax.random.key(settings.seed))
    with MetricWriter(run.workdir) as writer:
        result = loops.run_grpo(run, params, run.workdir / "checkpoints" / "grpo", writer)
    return run, jax.device_get(result.params), result


def test_three_grpo_steps_on_8_devices_equal_1_device(tmp_path):
    _, one, r1 = grpo_params(tiny_settings(tmp_path / "one"))
    _, eight, r8 = grpo_params(tiny_settings(tmp_path / "eight", mesh=(2, 2, 2)))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4), one, eight)
    moved = jax.tree.map(lambda a: float(np.abs(a).sum()), one)
    assert r1.history[-1]["reward/mean"] == pytest.approx(r8.history[-1]["reward/mean"], abs=1e-6)
    assert sum(jax.tree.leaves(moved)) > 0


def test_resume_is_bitwise_exact(tmp_path):
    _, straight, _ = grpo_params(tiny_settings(tmp_path / "a", steps=4))
    grpo_params(tiny_settings(tmp_path / "b", steps=2))  # "stopped" at step 2
    _, resumed, _ = grpo_params(tiny_settings(tmp_path / "b", steps=4))
    jax.tree.map(np.testing.assert_array_equal, straight, resumed)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert {line["step"] for line in lines} >= {2, 4}


def test_batch_indices_are_a_pure_function_of_seed_and_step():
    a = batch_indices(10, 4, 2, seed=3)
    assert np.array_equal(a, batch_indices(10, 4, 2, seed=3))
    epoch0 = np.concatenate([batch_indices(10, 5, s, seed=3) for s in (0, 1)])
    assert sorted(epoch0.tolist()) == list(range(10))  # one pass = a permutation


def test_trace_sources_sft_and_evaluation(tmp_path):
    settings = tiny_settings(tmp_path)
    run = prepare_run(settings)
    teacher = traces.teacher_traces(run, 16, seed=0)
    assert len(teacher) == 16 and all(r[-1] == run.eos_ids[0] for _, r in teacher)
    text = run.tokenizer.decode(teacher[0][1])
    assert "<analyze user>" in text and "</rate>" in text
    lines = [
        json.dumps({"prompt": "hello", "response": "<rate> 4 </rate>"}),
        "not json",
        json.dumps(
            {
                "user_id": run.splits["train"].examples[0].user_id,
                "item_id": run.splits["train"].examples[0].item_id,
                "response": "x",
            }
        ),
        json.dumps({"user_id": "nobody", "item_id": "none", "response": "x"}),
    ]
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(lines) + "\n")
    from_file, skipped = traces.file_traces(run, str(path))
    assert len(from_file) == 2 and skipped == {"malformed_line": 1, "unknown_example": 1}
    with pytest.raises(ConfigError, match="does not exist"):
        traces.file_traces(run, str(tmp_path / "missing.jsonl"))
    params = initial_params(run, jax.random.key(0))
    with MetricWriter(run.workdir) as writer:
        sft = loops.run_sft(run, params, teacher, run.workdir / "ck", writer, log_every=1)
    assert len(sft.history) == 2 and np.isfinite(sft.history[-1]["loss"])
    result = evaluate(run, sft.params, run.splits["test"], num_examples=8, batch_size=8)
    assert result["num_examples"] == 8
    assert 0.0 <= result["format_valid_rate"] <= 1.0
    assert result["mae"] >= 0 and result["parse_failure_rate"] == 1 - result["format_valid_rate"]
    try:
        selfmade, stats = traces.self_traces(run, sft.params, 8, seed=0, batch=8)
        assert stats["kept_first_try"] + stats.get("kept_after_rewrite", 0) == len(selfmade)
    except ConfigError as e:  # an untrained model may get nothing right: a clear error
        assert "no usable trace" in str(e)


def test_sft_batch_pads_prompts_left_and_cuts_responses():
    batch = loops.sft_batch(
        [([1, 2, 3], [7, 8, 9, 10]), ([4], [5])], [0, 1], prompt_len=4, resp_len=3, pad_id=0
    )
    assert batch.prompt.tolist() == [[0, 1, 2, 3], [0, 0, 0, 4]]
    assert batch.prompt_valid.tolist() == [[False, True, True, True], [False, False, False, True]]
    assert batch.resp[:, 0].tolist() == [[7, 8, 9], [5, 0, 0]]
    assert batch.resp_mask[:, 0].tolist() == [[True, True, True], [True, False, False]]


@pytest.mark.parametrize("name", ["reczero_qwen2_5_7b", "recone_qwen2_5_7b"])
def test_paper_configs_lower_for_qwen2_5_7b_on_a_fake_mesh(name):
    from reczero_jax.model.model_config import ModelConfig
    from reczero_jax.tools.lower_config import SHAPES, lower_config

    spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.mesh.shape = (1, 2, 4)  # the 8 fake devices
    lowered = lower_config(load_settings(config), ModelConfig(**SHAPES["qwen2.5-7b"]))
    assert set(lowered) == {"train_step", "sampler"}
    assert "stablehlo" in lowered["train_step"].as_text()[:2000] or lowered["train_step"].as_text()
