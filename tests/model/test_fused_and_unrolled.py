"""Sampling-time fused projections and the unrolled training forward: the same function
of the same parameters as the plain, scanned decoder."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reczero_jax import sharding
from reczero_jax.model import Decoder, ModelConfig, positions_from_mask
from reczero_jax.model.decoder import fuse_projections
from reczero_jax.model.params import init_params, param_shardings
from reczero_jax.rl.objectives import Forward, training_forward
from reczero_jax.settings import ModelSettings
from tests.model.test_decode import CONFIGS

LLAMA_BIASED = ModelConfig(
    model_type="llama",
    vocab_size=128,
    hidden_size=64,
    intermediate_size=96,
    num_layers=2,
    num_heads=6,
    num_kv_heads=2,
    head_dim=16,
    qkv_bias=True,
    o_bias=True,
    mlp_bias=True,
)
ALL = {**CONFIGS, "llama_biased": LLAMA_BIASED}


def _params(config, scale=5.0):
    mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
    params = init_params(config, mesh, sharding.SAMPLE_RULES, jax.random.key(0))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    # random biases and norm scales too, so a misplaced bias or head shows up
    leaves = [
        x * scale if x.ndim > 2 else x + 0.1 * jax.random.normal(k, x.shape)
        for x, k in zip(leaves, keys)
    ]
    return jax.tree.unflatten(tree, leaves)


def _tokens():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 128, (3, 9)).astype(np.int32)
    mask = np.ones_like(tokens, bool)
    mask[1, :4] = False  # a left-padded row
    return tokens, mask


@pytest.mark.parametrize("name", sorted(ALL))
def test_fused_projections_give_the_same_logits_and_keys(name):
    config = ALL[name]
    params = _params(config)
    fused = fuse_projections(params, config)
    attn, mlp = fused["layers"]["attn"], fused["layers"]["mlp"]
    assert not {"q_proj", "k_proj", "v_proj"} & set(attn)
    assert not {"gate_proj", "up_proj"} & set(mlp)
    r = config.num_heads // config.num_kv_heads
    shape = (config.num_layers, config.hidden_size, config.num_kv_heads, r + 2, config.head_dim)
    assert attn["qkv_proj"]["kernel"].shape == shape
    assert mlp["gate_up_proj"]["kernel"].shape == (
        config.num_layers, config.hidden_size, 2, config.intermediate_size,
    )  # fmt: skip
    tokens, mask = _tokens()
    args = (tokens, positions_from_mask(mask), {"key_valid": mask})
    plain = Decoder(config, mode="full", return_kv=True).apply({"params": params}, *args)
    out = Decoder(config, mode="full", return_kv=True, fused=True).apply({"params": fused}, *args)
    ref_logits, (ref_k, ref_v) = plain
    logits, (k, v) = out
    np.testing.assert_allclose(np.asarray(logits), np.asarray(ref_logits), atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(k), np.asarray(ref_k), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(v), np.asarray(ref_v), atol=1e-5, rtol=1e-5)


def test_fused_projections_keep_kv_groups_on_their_tensor_shard():
    """On a mesh with tensor = 2 the fused kernel is split along its KV-head axis: each
    shard holds whole groups (its query heads, key and value), so the split after the
    product needs no communication and the logits equal the unsharded ones."""
    config = LLAMA_BIASED
    params = _params(config)
    tokens, mask = _tokens()
    args = (tokens, positions_from_mask(mask), {"key_valid": mask})
    ref, _ = Decoder(config).apply({"params": params}, *args)
    if len(jax.devices()) < 2:
        pytest.skip("needs 2 devices (the fake 8-device CPU mesh)")
    mesh = sharding.make_mesh((1, 1, 2), jax.devices()[:2])
    params = jax.device_put(params, param_shardings(config, mesh, sharding.SAMPLE_RULES))
    model = Decoder(config, fused=True)

    @jax.jit
    def run(p):
        with sharding.use_mesh(mesh, sharding.SAMPLE_RULES):
            f = fuse_projections(p, config)
            return model.apply({"params": f}, *args)[0], f["layers"]["attn"]["qkv_proj"]["kernel"]

    logits, kernel = run(params)
    assert kernel.sharding.spec[2] == "tensor"  # [L, D, Hkv, R + 2, Dh]: Hkv split
    np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("remat", ["none", "full"])
def test_unrolled_training_forward_equals_the_scanned_one(remat):
    """``scan_layers=False`` unrolls the same stacked parameters: equal log-probs and
    gradients."""
    config = CONFIGS["qwen2_gqa"]
    params = _params(config, scale=3.0)
    rng = np.random.default_rng(2)
    b, g, p, t = 2, 3, 6, 5
    batch = _Batch(
        prompt=rng.integers(1, 128, (b, p)).astype(np.int32),
        prompt_valid=np.arange(p)[None] >= np.array([[0], [2]]),
        resp=rng.integers(1, 128, (b, g, t)).astype(np.int32),
        resp_mask=np.arange(t)[None, None] < rng.integers(1, t + 1, (b, g, 1)),
    )
    outs = []
    for scan in (True, False):
        fwd = Forward(config, remat=remat, scan_layers=scan)

        def loss(q, fwd=fwd):
            logp, _ = fwd(q, batch)
            return jnp.sum(jnp.where(batch.resp_mask, logp, 0.0))

        outs.append(jax.jit(jax.value_and_grad(loss))(params))
    (v0, g0), (v1, g1) = outs
    np.testing.assert_allclose(float(v1), float(v0), rtol=1e-6)
    jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, atol=1e-5, rtol=1e-5), g1, g0)


def test_model_settings_reach_the_training_forward():
    model = ModelSettings(remat="full", scan_layers=False, logits_remat=False)
    fwd = training_forward(model, CONFIGS["qwen2_gqa"], 0.5)
    assert (fwd.remat, fwd.scan_layers, fwd.logits_remat, fwd.temperature) == (
        "full", False, False, 0.5,
    )  # fmt: skip
    default = training_forward(ModelSettings(), CONFIGS["qwen2_gqa"], 1.0)
    assert default.scan_layers is True and default.logits_remat is True


@dataclasses.dataclass
class _Batch:
    prompt: np.ndarray
    prompt_valid: np.ndarray
    resp: np.ndarray
    resp_mask: np.ndarray
