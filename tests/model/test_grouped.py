"""The grouped training forward (prompt once, G responses) against full forwards."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from reczero_jax import sharding
from reczero_jax.model import Decoder, compute_logits
from reczero_jax.model.decoder import (
    lm_head_kernel,
    logits_from_hidden,
    pack_groups,
    response_hidden,
)
from reczero_jax.model.params import init_params
from tests.model.test_decode import CONFIGS


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_grouped_logits_equal_full_forward_per_response(name):
    config = CONFIGS[name]
    mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
    params = init_params(config, mesh, sharding.TRAIN_RULES, jax.random.key(0))
    params = jax.tree.map(lambda x: x * 5 if x.ndim > 1 else x, params)
    rng = np.random.default_rng(1)
    b, g, p, t = 2, 3, 7, 5
    prompt_lens, resp_lens = [7, 4], rng.integers(1, t + 1, (b, g))
    prompts = np.zeros((b, p), np.int32)
    prompt_valid = np.zeros((b, p), bool)
    for i, n in enumerate(prompt_lens):
        prompts[i, p - n :] = rng.integers(1, 128, n)
        prompt_valid[i, p - n :] = True
    resp = rng.integers(1, 128, (b, g, t)).astype(np.int32)
    resp_valid = np.arange(t)[None, None] < resp_lens[..., None]
    tokens, positions, shared = pack_groups(prompts, prompt_valid, resp, resp_valid)
    hidden, _ = Decoder(config, mode="grouped", output="hidden").apply(
        {"params": params}, tokens, positions, shared
    )
    logits = logits_from_hidden(
        response_hidden(hidden, p, g, t), lm_head_kernel(params, config), np.float32
    )  # [B, G, T, V]
    for i in range(b):
        for j in range(g):
            n = resp_lens[i, j]
            seq = np.concatenate([prompts[i, p - prompt_lens[i] :], resp[i, j, :n]])[None]
            ref = np.asarray(compute_logits(config, params, seq))[0, prompt_lens[i] - 1 : -1]
            np.testing.assert_allclose(np.asarray(logits[i, j, :n]), ref, atol=3e-5, rtol=1e-5)
