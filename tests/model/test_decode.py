"""The decode path (shared prompt cache + generated cache) against full recomputation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reczero_jax import sharding
from reczero_jax.model import Decoder, ModelConfig, compute_logits, positions_from_mask
from reczero_jax.model.decoder import (
    decode_step_unrolled,
    lm_head_kernel,
    logits_from_hidden,
    split_layers,
)
from reczero_jax.model.params import init_params

CONFIGS = {
    "qwen2_gqa": ModelConfig(
        model_type="qwen2",
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        qkv_bias=True,
        tie_word_embeddings=True,
    ),
    "qwen3_mqa": ModelConfig(
        model_type="qwen3",
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_layers=2,
        num_heads=4,
        num_kv_heads=1,
        head_dim=32,
        qk_norm=True,
    ),
}


def _params(config):
    mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
    params = init_params(config, mesh, sharding.SAMPLE_RULES, jax.random.key(0))
    return jax.tree.map(lambda x: x * 5 if x.ndim > 1 else x, params)  # sharper logits


B, G, P, STEPS = 2, 3, 8, 6
PROMPT_LENS = [8, 5]


def _case(config, params, seed):
    """Left-padded prompts, continuations, the prompt cache and the float64 reference.

    Returns (prompts [B, P], valid [B, P], cont [N, STEPS], prompt_k [L, B, Hkv, Dh, P]
    (slots last), prompt_v [L, B, Hkv, P, Dh], ref logits [N, P + STEPS, V]): the
    reference is each row's full sequence (its prompt, unpadded, + continuation),
    right-padded to one length (causal logits of earlier positions are unaffected), in
    float64.
    """
    rng = np.random.default_rng(seed)
    prompts = np.zeros((B, P), np.int32)
    valid = np.zeros((B, P), bool)
    for i, n in enumerate(PROMPT_LENS):
        prompts[i, P - n :] = rng.integers(1, 128, n)
        valid[i, P - n :] = True
    cont = rng.integers(1, 128, (B * G, STEPS)).astype(np.int32)  # [N, steps]
    _, (pk, pv) = Decoder(config, mode="full", return_kv=True).apply(
        {"params": params}, prompts, positions_from_mask(valid), {"key_valid": valid}
    )
    seqs = np.zeros((B * G, P + STEPS), np.int32)
    for row in range(B * G):
        i = row // G
        seqs[row, : PROMPT_LENS[i] + STEPS] = np.concatenate(
            [prompts[i, P - PROMPT_LENS[i] :], cont[row]]
        )
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
        ref = np.asarray(compute_logits(config, params64, seqs, dtype=jnp.float64))
    return prompts, valid, cont, pk, pv, ref


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_decode_logits_equal_full_recompute_at_every_step(name):
    """Prefill B left-padded prompts, then feed G continuations token by token.

    The reference is the full forward in float64: both float32 paths round by up to ~2e-5
    at these sharpened weights (logits up to ~3.3; measured on an AVX-512 Xeon, where the
    two float32 paths differ by 2.2e-5), while a wrong cache entry, mask or position moves
    a logit by far more than the 5e-5 allowed.
    """
    config = CONFIGS[name]
    params = _params(config)
    prompts, valid, cont, pk, pv, ref = _case(config, params, 0)
    step = jax.jit(Decoder(config, mode="decode", return_kv=True).apply)
    shape = (config.num_layers, B * G, config.num_kv_heads, STEPS, config.head_dim)
    gk, gv = jnp.zeros(shape).swapaxes(3, 4), jnp.zeros(shape)  # keys' slots last
    prompt_len_n = np.repeat(valid.sum(1), G)
    for t in range(STEPS):
        logits, (k, v) = step(
            {"params": params},
            cont[:, t : t + 1],
            (prompt_len_n + t)[:, None],
            {"prompt_valid": valid, "gen_valid": jnp.arange(STEPS) < t},
            {"prompt_k": pk, "prompt_v": pv, "gen_k": gk, "gen_v": gv},
        )
        gk, gv = gk.at[:, :, :, :, t].set(k), gv.at[:, :, :, t].set(v)
        for row in range(B * G):
            expected = ref[row, PROMPT_LENS[row // G] + t]
            np.testing.assert_allclose(np.asarray(logits[row, 0]), expected, atol=5e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_unrolled_decode_step_equals_full_recompute_and_writes_its_caches(name):
    """``decode_step_unrolled`` over ``split_layers`` (fused, per layer; each layer writes
    the token into its own caches, keys [B, G, Hkv, Dh, Tg] and values [B, G, Hkv, Tg,
    Dh], then attends) against the same float64 full forward as above; every cache slot
    it writes holds the key and value the full-mode forward computes for that token."""
    config = CONFIGS[name]
    params = _params(config)
    prompts, valid, cont, pk, pv, ref = _case(config, params, 1)
    layers = split_layers(params["layers"], config)
    shape = (B, G, config.num_kv_heads, STEPS, config.head_dim)
    gen = [(jnp.zeros(shape).swapaxes(3, 4), jnp.zeros(shape)) for _ in layers]
    step = jax.jit(
        lambda tok, pos, shared, caches: decode_step_unrolled(
            config, jnp.float32, params, layers, tok, pos, shared, caches
        )
    )
    kernel = lm_head_kernel(params, config)
    prompt_len_n = np.repeat(valid.sum(1), G)
    for t in range(STEPS):
        shared = {"prompt_valid": valid, "gen_valid": jnp.arange(STEPS) <= t, "write_index": t}
        caches = [
            {"prompt_k": pk[i], "prompt_v": pv[i], "gen_k": k, "gen_v": v}
            for i, (k, v) in enumerate(gen)
        ]
        hidden, gen = step(cont[:, t], (prompt_len_n + t)[:, None], shared, caches)
        logits = np.asarray(logits_from_hidden(hidden[:, 0], kernel, jnp.float32))
        for row in range(B * G):
            expected = ref[row, PROMPT_LENS[row // G] + t]
            np.testing.assert_allclose(logits[row], expected, atol=5e-5, rtol=0)
    # the written caches: row (i, j)'s slot t holds token t's key/value of a full forward
    # over that row's whole sequence (left-padded like the prompts)
    full_rows = np.zeros((B * G, P + STEPS), np.int32)
    row_valid = np.zeros((B * G, P + STEPS), bool)
    for row in range(B * G):
        full_rows[row, :P], row_valid[row, :P] = prompts[row // G], valid[row // G]
        full_rows[row, P:], row_valid[row, P:] = cont[row], True
    _, (fk, fv) = Decoder(config, mode="full", return_kv=True).apply(
        {"params": params}, full_rows, positions_from_mask(row_valid), {"key_valid": row_valid}
    )  # keys [L, N, Hkv, Dh, P + steps], values [L, N, Hkv, P + steps, Dh]
    for i, (k, v) in enumerate(gen):
        want_k = np.asarray(fk[i, ..., P:]).reshape(np.asarray(k).shape)
        want_v = np.asarray(fv[i, :, :, P:]).reshape(shape)
        np.testing.assert_allclose(np.asarray(k), want_k, atol=1e-4, rtol=0)
        np.testing.assert_allclose(np.asarray(v), want_v, atol=1e-4, rtol=0)


def test_remat_and_dtypes_run_and_agree():
    config = CONFIGS["qwen2_gqa"]
    params = _params(config)
    tokens = np.arange(1, 17, dtype=np.int32).reshape(2, 8)
    mask = np.ones_like(tokens, bool)
    base = compute_logits(config, params, tokens, mask)

    def loss(p, remat, dtype=jnp.float32):
        logits, _ = Decoder(config, remat=remat, dtype=dtype, param_dtype=dtype).apply(
            {"params": p}, tokens, positions_from_mask(mask), {"key_valid": mask}
        )
        return jnp.mean(jax.nn.log_softmax(logits)[..., 3])

    grad = jax.jit(jax.grad(loss), static_argnums=(1, 2))
    with jax.enable_x64(True):  # the exact gradient, to which each float32 one is compared
        exact = grad(jax.tree.map(lambda x: np.asarray(x, np.float64), params), "none", jnp.float64)
    g0 = grad(params, "none")
    # float32 spacing at the largest entry (|g| ~ 4.6): recomputation may fuse the same
    # forward differently, a few roundings apart (measured: up to 3 spacings)
    spacing = float(np.spacing(np.float32(max(np.abs(x).max() for x in jax.tree.leaves(g0)))))
    for remat in ("none", "full", "dots"):
        g1 = grad(params, remat)
        # each within float32 accuracy of the exact gradient (measured: 3.2e-5 at most)
        for want, tolerance in ((exact, 5e-5), (g0, 8 * spacing)):
            jax.tree.map(
                lambda a, c, tol=tolerance: np.testing.assert_allclose(a, c, atol=tol, rtol=0),
                g1,
                want,
            )
    bf16 = compute_logits(config, params, tokens, mask, dtype=jnp.bfloat16)
    assert bf16.dtype == jnp.float32
    assert np.abs(np.asarray(bf16) - np.asarray(base)).max() < 0.1 * np.abs(base).max()
