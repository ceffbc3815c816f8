"""The HF mapping table: agrees with the model's parameter tree, transforms invert."""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reczero_jax.hf import param_mapping as pm
from reczero_jax.model.decoder import Decoder
from reczero_jax.model.model_config import ModelConfig


def _config(model_type="llama", **flags) -> ModelConfig:
    base = dict(
        model_type=model_type,
        vocab_size=96,
        hidden_size=32,
        intermediate_size=48,
        num_layers=3,
        num_heads=4,
        num_kv_heads=2,
        head_dim=12,
    )
    return ModelConfig(**{**base, **flags})


_FLAG_COMBOS = [
    dict(zip(("qkv_bias", "o_bias", "mlp_bias", "qk_norm", "tie_word_embeddings"), bits))
    for bits in itertools.product((False, True), repeat=5)
    if bits[1] <= bits[0]  # o_bias only comes with qkv bias
][::3]


def _model_shapes(config: ModelConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    tokens = jnp.zeros((1, 4), jnp.int32)
    variables = jax.eval_shape(
        lambda: Decoder(config).init(
            jax.random.key(0), tokens, tokens, {"key_valid": jnp.ones((1, 4), bool)}
        )
    )
    return {p: tuple(v.shape) for p, v in pm.flatten(nn.unbox(variables["params"])).items()}


@pytest.mark.parametrize(
    "flags", _FLAG_COMBOS, ids=lambda f: "-".join(k for k in f if f[k]) or "plain"
)
def test_table_agrees_with_model_param_tree(flags):
    config = _config(**flags)
    assert pm.expected_params(config) == _model_shapes(config)


def test_hf_shapes_and_names():
    config = _config(qkv_bias=True, o_bias=True, mlp_bias=True, qk_norm=True)
    hf = pm.expected_hf_tensors(config)
    q_row, layer = hf["model.layers.2.self_attn.q_proj.weight"]
    assert layer == 2 and q_row.hf_shape(config) == (4 * 12, 32)
    assert q_row.our_shape(config) == (3, 32, 4, 12)
    o_row, _ = hf["model.layers.0.self_attn.o_proj.weight"]
    assert o_row.hf_shape(config) == (32, 48) and o_row.our_shape(config) == (3, 4, 12, 32)
    assert "lm_head.weight" in hf
    assert "lm_head.weight" not in pm.expected_hf_tensors(_config(tie_word_embeddings=True))
    n_layer_tensors = sum(1 for name in hf if name.startswith("model.layers.0."))
    assert len(hf) == 3 * n_layer_tensors + 3  # + embed, final norm, lm_head


def test_to_ours_matches_torch_linear_semantics_and_inverts():
    config = _config(qkv_bias=True, o_bias=True)
    rng = np.random.default_rng(0)
    for row in pm.rows_for(config):
        hf = rng.standard_normal(row.hf_shape(config)).astype(np.float32)
        ours = row.to_ours(hf, config)
        assert ours.shape == row.our_shape(config)[1 if row.stacked else 0 :]
        np.testing.assert_array_equal(row.to_hf(ours, config), hf)
    # q_proj: torch computes y = x @ W.T, head h = y[h*Dh:(h+1)*Dh]; ours einsum 'd,dhk->hk'.
    q = pm.expected_hf_tensors(config)["model.layers.0.self_attn.q_proj.weight"][0]
    w = rng.standard_normal(q.hf_shape(config)).astype(np.float32)
    x = rng.standard_normal(32).astype(np.float32)
    np.testing.assert_allclose(
        np.einsum("d,dhk->hk", x, q.to_ours(w, config)), (w @ x).reshape(4, 12), rtol=1e-5
    )
