"""Whole training runs on a tiny synthetic world, through the phase runner: sharded ==
unsharded, exact resume (also of RecOne with a KL reference), trace sources, evaluation,
and lowering the paper configs with the loss training uses."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib

import jax
import numpy as np
import pytest

from reczero_jax.checkpointing import checkpoint_steps
from reczero_jax.config_parsing import ConfigError
from reczero_jax.data.loader import load_data
from reczero_jax.data.prompt_set import PromptSet
from reczero_jax.engine import build_engine, plan_phase
from reczero_jax.rewards.reference import parse
from reczero_jax.rl import traces
from reczero_jax.rl.evaluation import evaluate
from reczero_jax.rl.run import reward_function, run, scratch_corpus
from reczero_jax.rl.sft import sft_batch
from reczero_jax.settings import default_config, load_settings

ROOT = pathlib.Path(__file__).resolve().parents[2]


def tiny_settings(workdir, mode="grpo", mesh=(1, 1, 1), **grpo):
    c = default_config()
    c.mode = mode
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
    c.sampling.max_new_tokens = 16
    c.sampling.prompt_buckets = (256,)
    c.data.prompt.max_prompt_tokens = 256
    c.sft.num_traces = 32
    c.sft.batch_size = 8
    c.sft.steps = 2
    c.sft.max_response_tokens = 16
    c.sft.optim.learning_rate = 1e-3
    c.grpo.num_generations = 2
    c.grpo.steps = 3
    c.grpo.prompts_per_step = 8
    c.grpo.micro_groups = 4
    c.grpo.entropy_coef = 0.01  # a gradient even when every reward in a group is equal
    c.grpo.eval_every = 0
    c.grpo.optim.learning_rate = 1e-3
    c.eval.batch_size = 8
    c.eval.num_examples = 8
    c.checkpoint.save_every = 2
    c.checkpoint.export_hf = False
    c.grpo.update(grpo)
    return load_settings(c, num_devices=8)  # the test platform; never queries devices


def final_params(settings, phase="grpo"):
    """The weights of ``phase``'s latest checkpoint in the run's workdir, on the host."""
    engine = build_engine(settings)
    directory = pathlib.Path(settings.workdir) / "checkpoints" / phase
    return jax.device_get(engine.weights(plan_phase(None, [directory], "", "").initial))


def test_three_grpo_steps_on_8_devices_equal_1_device(tmp_path):
    r1 = run(tiny_settings(tmp_path / "one"))
    r8 = run(tiny_settings(tmp_path / "eight", mesh=(2, 2, 2)))
    one = final_params(tiny_settings(tmp_path / "one"))
    eight = final_params(tiny_settings(tmp_path / "eight", mesh=(2, 2, 2)))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4), one, eight)
    assert r1["grpo_history"][-1]["reward/mean"] == pytest.approx(
        r8["grpo_history"][-1]["reward/mean"], abs=1e-6
    )
    written = json.loads((tmp_path / "one" / "results.json").read_text())
    assert r1["grpo"]["num_examples"] == 8 and written["grpo"]["mae"] == r1["grpo"]["mae"]


def test_resume_is_bitwise_exact(tmp_path):
    run(tiny_settings(tmp_path / "a", steps=4))
    run(tiny_settings(tmp_path / "b", steps=2))  # "stopped" at step 2
    run(tiny_settings(tmp_path / "b", steps=4))
    straight = final_params(tiny_settings(tmp_path / "a", steps=4))
    resumed = final_params(tiny_settings(tmp_path / "b", steps=4))
    jax.tree.map(np.testing.assert_array_equal, straight, resumed)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert {line["step"] for line in lines} >= {2, 4}


def test_resumed_recone_keeps_the_cold_start_weights_as_kl_reference(tmp_path, caplog):
    """RecOne with a KL weight, stopped after 2 GRPO steps and relaunched, ends bitwise
    equal to the run that was never stopped: the resumed GRPO phase takes its KL reference
    from the cold start's checkpoint (with the scratch weights it would drift)."""
    kl = dict(kl_coef=0.5, kl_estimator="k2", entropy_coef=0.0)
    run(tiny_settings(tmp_path / "a", mode="recone", steps=4, **kl))
    run(tiny_settings(tmp_path / "b", mode="recone", steps=2, **kl))
    caplog.clear()
    with caplog.at_level("INFO", logger="reczero_jax"):
        resumed = run(tiny_settings(tmp_path / "b", mode="recone", steps=4, **kl))
    assert "sft_history" not in resumed  # the finished cold start was not run again
    assert "sft: complete (" in caplog.text and "not trained again" in caplog.text
    assert "grpo: complete (" not in caplog.text  # the stopped one was resumed
    straight = final_params(tiny_settings(tmp_path / "a", mode="recone", steps=4, **kl))
    again = final_params(tiny_settings(tmp_path / "b", mode="recone", steps=4, **kl))
    jax.tree.map(np.testing.assert_array_equal, straight, again)
    sft = final_params(tiny_settings(tmp_path / "a", mode="recone", **kl), phase="sft")
    moved = jax.tree.map(lambda x, y: float(np.abs(x - y).max()), straight, sft)
    assert max(jax.tree.leaves(moved)) > 0  # GRPO moved the weights off the reference


def test_best_checkpoint_by_validation_mae_is_kept_with_the_latest(tmp_path):
    settings = tiny_settings(tmp_path, steps=4, eval_every=1, eval_examples=8)
    settings = load_settings(
        {**_as_dict(settings), "checkpoint": {"save_every": 100, "max_to_keep": 1}}
    )
    results = run(settings)
    maes = {h["step"]: h["eval/mae"] for h in results["grpo_history"]}
    best = min(sorted(maes), key=lambda k: (maes[k], -k))
    assert set(checkpoint_steps(tmp_path / "checkpoints" / "grpo")) == {best, 4}


def _as_dict(settings):
    import dataclasses

    return dataclasses.asdict(settings)


def test_trace_sources_and_evaluation(tmp_path):
    settings = tiny_settings(tmp_path, mode="recone")
    data = load_data(settings.data)
    engine = build_engine(settings, corpus=lambda: scratch_corpus(data, settings))
    train = PromptSet(data.examples["train"], engine.tokenizer, settings.data.prompt)
    eos = engine.eos_ids[0]
    teacher, stats = traces.teacher_traces(train, data.world, 16, seed=0, noise=0.5, eos_id=eos)
    assert 0 < stats["rating_right"] < 1
    assert len(teacher) == 16 and all(r[-1] == eos for _, r in teacher)
    text = engine.tokenizer.decode(teacher[0][1])
    assert "<analyze user>" in text and "</rate>" in text
    lines = [
        json.dumps({"prompt": "hello", "response": "<rate> 4 </rate>"}),
        "not json",
        json.dumps(
            {
                "user_id": train.examples[0].user_id,
                "item_id": train.examples[0].item_id,
                "response": "x",
            }
        ),
        json.dumps({"user_id": "nobody", "item_id": "none", "response": "x"}),
    ]
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(lines) + "\n")
    from_file, skipped = traces.file_traces(str(path), train, eos)
    assert len(from_file) == 2 and skipped == {"malformed_line": 1, "unknown_example": 1}
    assert from_file[1][0] == train.ids(0)
    with pytest.raises(ConfigError, match="does not exist"):
        traces.file_traces(str(tmp_path / "missing.jsonl"), train, eos)
    params = engine.weights(plan_phase(None, [], "", "").initial)
    reward_fn = reward_function(settings, engine)
    test = PromptSet(data.examples["test"], engine.tokenizer, settings.data.prompt).sample(8, 0)
    result = evaluate(engine.sampler(greedy=True), params, test, reward_fn, 8, keep_texts=2)
    assert result["num_examples"] == 8 and len(result["samples"]) == 2
    assert 0.0 <= result["format_valid_rate"] <= 1.0
    assert result["mae"] >= 0 and result["parse_failure_rate"] == 1 - result["format_valid_rate"]
    try:
        sampler = engine.sampler(greedy=False)
        selfmade, stats = traces.self_traces(sampler, params, train, reward_fn, 8, seed=0, batch=8)
        assert stats["kept_first_try"] + stats.get("kept_after_rewrite", 0) == len(selfmade)
    except ConfigError as e:  # an untrained model may get nothing right: a clear error
        assert "no usable trace" in str(e)


def test_sft_reports_traces_cut_at_max_response_tokens(tmp_path):
    settings = tiny_settings(tmp_path, mode="sft")
    # bfloat16 weights (float32 compute): the optimizer state must keep its dtypes from step
    # to step, or the second step compiles again (float32 gradients promote bfloat16 moments)
    bf16 = dataclasses.replace(settings.model, param_dtype="bfloat16")
    sft = dataclasses.replace(settings.sft, steps=3)
    results = run(dataclasses.replace(settings, model=bf16, sft=sft))
    stats = results["sft_traces"]
    settings = tiny_settings(tmp_path, mode="sft")
    data = load_data(settings.data)
    engine = build_engine(settings)  # the workdir's tokenizer
    train = PromptSet(data.examples["train"], engine.tokenizer, settings.data.prompt)
    noise = settings.data.synthetic.teacher_noise
    found, _ = traces.teacher_traces(train, data.world, 32, 0, noise, engine.eos_ids[0])
    assert stats["num"] == 32
    assert stats["cut_at_max_response_tokens"] == sum(len(r) > 16 for _, r in found) > 0
    assert np.isfinite(results["sft_history"][-1]["loss"])
    assert "sft" in results and "grpo" not in results
    assert stats["rating_right"] < 1  # the teacher's noisy midpoint rule
    # one prompt bucket for the phase: everything compiles during the first step
    compiles = results["compiles"]["sft"]
    assert compiles["first_step"] > 0 and compiles["after_first_step"] == 0


def test_sft_rewrite_wrong_reaches_the_traces(tmp_path):
    settings = tiny_settings(tmp_path, mode="sft")
    sft = dataclasses.replace(settings.sft, steps=1, rewrite_wrong=True)
    results = run(dataclasses.replace(settings, sft=sft))
    assert results["sft_traces"]["rating_right"] == 1.0
    data = load_data(settings.data)
    engine = build_engine(settings)  # the workdir's tokenizer
    train = PromptSet(data.examples["train"], engine.tokenizer, settings.data.prompt)
    eos = engine.eos_ids[0]
    found, _ = traces.teacher_traces(train, data.world, 32, 0, 0.5, eos, rewrite=True)
    idx = {tuple(train.ids(i)): i for i in range(len(train))}
    for prompt, response in found:
        text = engine.tokenizer.decode(response[:-1])
        assert parse(text).rating == train.targets_of([idx[tuple(prompt)]])[0]


def test_sft_batch_pads_prompts_left_and_cuts_responses():
    batch = sft_batch(
        [([1, 2, 3], [7, 8, 9, 10]), ([4], [5])], [0, 1], prompt_len=4, resp_len=3, pad_id=0
    )
    assert batch.prompt.tolist() == [[0, 1, 2, 3], [0, 0, 0, 4]]
    assert batch.prompt_valid.tolist() == [[False, True, True, True], [False, False, False, True]]
    assert batch.resp[:, 0].tolist() == [[7, 8, 9], [5, 0, 0]]
    assert batch.resp_mask[:, 0].tolist() == [[True, True, True], [True, False, False]]


def _paper_config(name, tmp_path):
    spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.mesh.shape = (1, 2, 4)  # the 8 fake devices
    if config.sft.traces == "file":
        config.sft.traces_path = str(tmp_path / "traces.jsonl")
        (tmp_path / "traces.jsonl").write_text("")
    return config


@pytest.mark.parametrize("name", ["reczero_qwen2_5_7b", "recone_qwen2_5_7b"])
def test_paper_configs_lower_for_qwen2_5_7b_on_a_fake_mesh(name, tmp_path):
    from reczero_jax.model.model_config import ModelConfig
    from reczero_jax.tools.lower_config import SHAPES, lower_config

    config = _paper_config(name, tmp_path)
    lowered = lower_config(load_settings(config), ModelConfig(**SHAPES["qwen2.5-7b"]))
    assert {"train_step", "sampler"} <= set(lowered)
    assert "stablehlo" in lowered["train_step"].as_text()[:5000]
    if name == "reczero_qwen2_5_7b":
        # sampling.decode_loop='auto' is lowered as a TPU pod runs it: scanned, one layer
        # loop inside each of the 4 cache phases' decode loops (on CPU it would unroll)
        config.sampling.decode_loop = "unrolled"
        unrolled = lower_config(load_settings(config), ModelConfig(**SHAPES["qwen2.5-7b"]))

        def loops(low):
            return low["sampler"].as_text().count("stablehlo.while")

        assert loops(lowered) == loops(unrolled) + 4


def test_lower_config_lowers_the_loss_that_training_runs(tmp_path):
    """Every GRPO loss field set away from its default: lower_config's objective must be
    the one the GRPO phase is given (``rl.grpo.grpo_objective``), field for field."""
    import dataclasses

    from reczero_jax.model.model_config import ModelConfig
    from reczero_jax.rl.grpo import grpo_objective
    from reczero_jax.rl.losses import GRPOLoss
    from reczero_jax.tools.lower_config import SHAPES, lower_config

    config = _paper_config("reczero_qwen2_5_7b", tmp_path)
    config.grpo.update(
        dict(
            aggregation="seq-mean-token-mean",
            eps_low=0.1,
            eps_high=0.28,
            dual_clip_c=2.5,
            kl_coef=0.05,
            kl_estimator="k2",
            entropy_coef=0.003,
        )
    )
    config.sampling.temperature = 0.9
    config.model.remat = "full"
    config.mesh.shape = (1, 4, 2)  # Qwen2.5-1.5B has 2 KV heads
    settings = load_settings(config)
    model_config = ModelConfig(**SHAPES["qwen2.5-1.5b"])
    lowered = lower_config(settings, model_config)
    assert lowered["objective"] == grpo_objective(settings, model_config)
    defaults = dataclasses.asdict(GRPOLoss())
    changed = {
        k for k, v in dataclasses.asdict(lowered["objective"].loss).items() if v != defaults[k]
    }
    assert changed == set(defaults)
    assert lowered["objective"].forward.temperature == 0.9
    assert lowered["objective"].forward.remat == "full"
