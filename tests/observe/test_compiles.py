"""Compilation counting (observe.compiles) and the shape stability of the GRPO batch merge."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from reczero_jax.observe.compiles import CompileLog, compilations
from reczero_jax.rl.grpo import collect_groups
from reczero_jax.settings import GRPOSettings
from tests.rl.test_group_filter import _round


def test_compilations_count_each_new_shape_once():
    fn = jax.jit(lambda x: x * 3 + 1)
    before = compilations()
    fn(np.ones(5, np.float32))
    fn(np.ones(5, np.float32))
    assert compilations() - before == 1
    fn(np.ones(6, np.float32))
    assert compilations() - before == 2


def test_compile_log_tells_new_shapes_from_recompiles(caplog):
    log = CompileLog("toy")
    stable = jax.jit(lambda x: jnp.sin(x) * 2)
    for step, n in enumerate([4, 4, 4, 8, 8], start=1):
        with log.step(n, step) as counted:
            stable(np.ones(n, np.float32)).block_until_ready()
        assert counted["compile/count"] == (1 if step in (1, 4) else 0)
    assert log.summary() == {
        "first_step": 1, "after_first_step": 1, "recompiles": 0, "signatures": 2
    }  # fmt: skip
    # a function rebuilt every step compiles again for shapes it has seen: a recompile
    for step in (6, 7):
        with log.step(4, step):
            jax.jit(lambda x: jnp.cos(x) + 1)(np.ones(4, np.float32)).block_until_ready()
    summary = log.summary()
    assert summary["recompiles"] == 2 and summary["after_first_step"] == 3
    assert "step 7: 1 XLA compilation(s) for shapes an earlier step" in caplog.text


def test_compile_log_reads_a_set_signature_when_the_step_ends():
    log = CompileLog("toy")
    fn = jax.jit(lambda x: x - 1)
    for step in (1, 2):
        buckets: set[int] = set()
        with log.step(buckets, step):
            buckets.add(7)
            fn(np.ones(7, np.float32))
    assert log.summary()["signatures"] == 1 and log.summary()["recompiles"] == 0


def test_dynamic_sampling_merges_any_number_of_rounds_without_compiling():
    flat, spread = [1.0, 1.0], [1.0, 0.0]
    cfg = GRPOSettings(prompts_per_step=4, num_generations=2, dynamic_sampling=True,
                       dynamic_max_rounds=3)  # fmt: skip
    patterns = [
        [np.array([spread] * 4)],  # 1 round
        [np.array([flat, spread, flat, flat]), np.array([spread] * 4)],  # 2 rounds
        [np.array([flat] * 4)] * 3,  # 3 rounds
    ]
    rounds = {len(p): [_round(r, 3, t + 1) for t, r in enumerate(p)] for p in patterns}
    collect_groups(lambda r: rounds[3][r], cfg)  # compiles the merge, for 3 rounds
    before = compilations()
    for n in (3, 1, 2, 1, 3):
        batch, m = collect_groups(lambda r, made=rounds[n]: made[r], cfg)
        assert m.get("dynamic/rounds", 1.0) == n and batch.prompt.shape == (4, 3)
    assert compilations() == before
