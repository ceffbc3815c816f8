"""benchmarks/memory.py on a tiny shape: positive sizes, the naive forward's extra
scratch memory, what remat saves, and the fits-in-budget search's boundary compiles.
Runs on however many devices the process has (1, or conftest's 8); six compiles."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import pytest

from reczero_jax import sharding
from reczero_jax.model.model_config import ModelConfig
from tests.benchmarks.scripts import load_script

TINY = ModelConfig(
    model_type="qwen2",
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
    qkv_bias=True,
    tie_word_embeddings=True,
)
G, P, T = 4, 64, 8  # a prompt long relative to the answer
VARIANTS = ("ours/none", "ours/full", "naive/full")


@pytest.fixture(scope="module")
def bench():
    module = load_script("memory")
    return module


@pytest.fixture(scope="module")
def result(bench):
    """The benchmark's run() on the tiny shape: one group per device."""
    return bench.run(
        ["tiny"],
        [len(jax.devices())],
        variants=VARIANTS,
        searched=(),
        dtype="float32",
        param_dtype="float32",
        shape=dict(prompts=1, answers_per_prompt=G, prompt_len=P, answer_len=T),
        configs={"tiny": TINY},
        devices=jax.devices(),
    )


@pytest.fixture(scope="module")
def paper(result):
    return result["models"]["tiny"]["chips"][str(len(jax.devices()))]["paper"]


def test_sizes_are_positive_and_consistent(paper):
    for r in paper.values():
        assert r["prompts"] == len(jax.devices())  # 1 prompt rounded up to the batch shards
        for key in ("argument", "output", "temp", "peak"):
            assert r[key] > 0, (key, r)
        assert r["peak"] == r["argument"] + r["output"] - r["alias"] + r["temp"]
    assert len({r["argument"] for r in paper.values()}) == 1  # only the forward differs


def test_naive_needs_more_temp_than_ours(paper):
    assert paper["naive/full"]["temp"] > paper["ours/full"]["temp"]


def test_full_remat_needs_no_more_temp(paper):
    assert paper["ours/full"]["temp"] <= paper["ours/none"]["temp"]


def test_tables_and_json(bench, result):
    text = bench.tables(result)
    assert text.count("| tiny |") == len(VARIANTS)
    assert json.loads(json.dumps(result)) == result


def test_search_stops_at_the_budget(bench, paper):
    """On compiled sizes: the answer fits and the next batch up does not."""
    mesh = bench.fsdp_mesh(jax.devices())
    step = sharding.batch_shards(mesh)

    @functools.cache  # compiles are deterministic: each B is compiled once
    def peak(b):
        if b == step:
            return paper["ours/full"]["peak"]  # already compiled by run()
        r = bench.measure(TINY, mesh, "ours/full", b, G, P, T, jnp.float32, jnp.float32)
        return r["peak"]

    one, two = peak(step), peak(2 * step)
    assert two > one
    budget = (one + two) / 2
    fit = bench.largest_fitting(peak, budget, step, cap=16 * step)
    b = fit["prompts"]
    assert b == step and fit["next_prompts"] == b + step and not fit["capped"]
    assert peak(b) <= budget < peak(b + step)
    assert bench.largest_fitting(peak, one - 1, step, cap=16 * step)["prompts"] == 0
    capped = bench.largest_fitting(peak, two, step, cap=2 * step)
    assert capped["capped"] and capped["prompts"] == 2 * step and capped["next_prompts"] is None


@pytest.mark.parametrize("step", [1, 8, 64])
def test_search_matches_brute_force(bench, step):
    """Doubling + interpolated bisection against a scan of every multiple of ``step``,
    on affine and convex peak curves; every B evaluated at most once."""
    cap = 1024
    for slope, curve, base in [(1.0, 0.0, 50.0), (3.0, 0.01, 0.0), (0.5, 0.002, 900.0)]:
        peak_of = lambda b, s=slope, c=curve, a=base: a + s * b + c * b * b  # noqa: E731
        for budget in [0.0, 60.0, 333.3, 1000.0, 2500.0, 1e9]:
            calls = []
            fit = bench.largest_fitting(
                lambda b, f=peak_of, c=calls: c.append(b) or f(b), budget, step, cap
            )
            fitting = [b for b in range(step, cap + 1, step) if peak_of(b) <= budget]
            want = max(fitting, default=0)
            assert fit["prompts"] == want, (slope, curve, base, budget)
            assert len(calls) == len(set(calls)) == fit["tried"]
            assert fit["capped"] == (want == cap // step * step)
            if not fit["capped"]:
                assert fit["next_prompts"] == want + step
                assert fit["next_peak"] > budget
