"""The training attention through jax.nn.dot_product_attention (``model.attention='cudnn'``)
computes what the einsum kernels compute.

cuDNN itself needs an NVIDIA GPU; on CPU the same formulation (the key layout, the masks,
the broadcast prompt keys and their summed gradients) runs through JAX's 'xla'
implementation of the same call, which is what these tests compare against the einsum
kernels: values and gradients, GQA and MQA, left-padded prompts and ragged answers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reczero_jax.model import attention
from reczero_jax.model.decoder import Decoder
from reczero_jax.rl.objectives import Forward, GRPOBatch
from tests.model.test_fused_and_unrolled import ALL as CONFIGS
from tests.model.test_fused_and_unrolled import _params


def _rand(key, shape):
    return jax.random.normal(key, shape, jnp.float32)


@pytest.mark.parametrize("hq, hkv", [(4, 2), (4, 1), (2, 2)])
def test_causal_dpa_equals_einsum(hq, hkv):
    b, t, dh = 3, 9, 8
    kq, kk, kv, kw = jax.random.split(jax.random.key(0), 4)
    q, k, v = _rand(kq, (b, t, hq, dh)), _rand(kk, (b, t, hkv, dh)), _rand(kv, (b, t, hkv, dh))
    lengths = np.array([9, 5, 1])
    valid = jnp.asarray(np.arange(t)[None] >= (t - lengths)[:, None])  # left padding
    weight = _rand(kw, (b, t, hq, dh)) * valid[:, :, None, None]  # real queries only

    def loss(fn, q, k, v):
        return jnp.sum(fn(q, k, v, valid) * weight)

    def dpa(q, k, v, valid):
        return attention.causal_attention_dpa(q, k, v, valid, "xla")

    ref = attention.causal_attention(q, k, v, valid)
    out = dpa(q, k, v, valid)
    real = np.asarray(valid)
    np.testing.assert_allclose(np.asarray(out)[real], np.asarray(ref)[real], atol=2e-6)
    grad = jax.jit(jax.grad(loss, argnums=(1, 2, 3)), static_argnums=0)
    g_ref = grad(attention.causal_attention, q, k, v)
    g_out = grad(dpa, q, k, v)
    for a, c in zip(g_out, g_ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), atol=2e-6)


@pytest.mark.parametrize("hq, hkv", [(4, 2), (4, 1)])
def test_grouped_dpa_equals_einsum(hq, hkv):
    b, g, t, p, dh = 2, 3, 5, 7, 8
    keys = jax.random.split(jax.random.key(1), 8)
    q = _rand(keys[0], (b, g, t, hq, dh))
    k, v = _rand(keys[1], (b, g, t, hkv, dh)), _rand(keys[2], (b, g, t, hkv, dh))
    pk, pv = _rand(keys[3], (b, p, hkv, dh)), _rand(keys[4], (b, p, hkv, dh))
    prompt_valid = jnp.asarray(np.arange(p)[None] >= np.array([0, 4])[:, None])
    resp_len = np.array([[5, 3, 1], [2, 5, 4]])
    resp_valid = jnp.asarray(np.arange(t)[None, None] < resp_len[..., None])
    weight = _rand(keys[5], (b, g, t, hq, dh)) * resp_valid[..., None, None]
    args = (q, k, v, pk, pv)

    def run(fn, *xs):
        return fn(*xs, prompt_valid, resp_valid)

    def dpa(*xs):
        return attention.grouped_response_attention_dpa(*xs, "xla")

    ref = run(attention.grouped_response_attention, *args)
    out = run(dpa, *args)
    real = np.asarray(resp_valid)
    np.testing.assert_allclose(np.asarray(out)[real], np.asarray(ref)[real], atol=2e-6)

    def loss(fn, *xs):
        return jnp.sum(run(fn, *xs) * weight)

    grad = jax.jit(jax.grad(loss, argnums=tuple(range(1, 6))), static_argnums=0)
    g_ref = grad(attention.grouped_response_attention, *args)
    g_out = grad(dpa, *args)
    for a, c in zip(g_out, g_ref):  # the prompt keys' gradients summed over the G answers
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), atol=5e-6)


@pytest.mark.parametrize("name", ["qwen2_gqa", "qwen3_mqa", "llama_biased"])
def test_training_forward_with_the_dpa_kernel(name, monkeypatch):
    """The whole grouped forward and its gradients, with 'cudnn' mapped to JAX's 'xla'
    implementation of the same call."""
    monkeypatch.setitem(attention.KERNEL_IMPLEMENTATION, "cudnn", "xla")
    config = CONFIGS[name]
    params = _params(config)
    rng = np.random.default_rng(0)
    b, g, p, t = 2, 3, 6, 5
    prompt_valid = np.arange(p)[None] >= np.array([0, 2])[:, None]
    batch = GRPOBatch(
        prompt=rng.integers(1, config.vocab_size, (b, p)).astype(np.int32),
        prompt_valid=prompt_valid,
        resp=rng.integers(1, config.vocab_size, (b, g, t)).astype(np.int32),
        resp_mask=np.arange(t)[None, None] < rng.integers(1, t + 1, (b, g))[..., None],
        old_logp=np.zeros((b, g, t), np.float32),
        advantages=np.zeros((b, g), np.float32),
    )

    def loss(fwd, params):
        logp, _ = fwd(params, batch)
        return jnp.sum(jnp.where(batch.resp_mask, logp, 0.0))

    einsum, dpa = Forward(config), Forward(config, attention="cudnn")
    mask = batch.resp_mask
    np.testing.assert_allclose(
        np.asarray(dpa(params, batch)[0])[mask], np.asarray(einsum(params, batch)[0])[mask],
        atol=1e-5,
    )  # fmt: skip
    grad = jax.jit(jax.grad(loss, argnums=1), static_argnums=0)
    g_einsum = grad(einsum, params)
    g_dpa = grad(dpa, params)
    jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, atol=1e-5), g_dpa, g_einsum)


def test_unknown_attention_kernel_is_refused():
    config = CONFIGS["qwen2_gqa"]
    tokens = jnp.ones((1, 2), jnp.int32)
    with pytest.raises(ValueError, match="attention must be one of"):
        Decoder(config, attention="flash").init(
            jax.random.key(0), tokens, tokens, {"key_valid": jnp.ones((1, 2), bool)}
        )


def test_cudnn_kernel_on_an_nvidia_gpu():
    """Where a GPU is present (``benchmarks/gpu.sh`` runs this file with
    JAX_PLATFORMS=cuda): cuDNN's kernels in bfloat16 against the float32 einsum kernels,
    values and gradients, at bfloat16 accuracy. Skipped on CPU."""
    if jax.devices()[0].platform != "gpu":
        pytest.skip("needs an NVIDIA GPU")
    b, g, t, p, hq, hkv, dh = 2, 4, 64, 96, 8, 2, 64
    keys = jax.random.split(jax.random.key(2), 6)
    q = _rand(keys[0], (b, g, t, hq, dh))
    k, v = _rand(keys[1], (b, g, t, hkv, dh)), _rand(keys[2], (b, g, t, hkv, dh))
    pk, pv = _rand(keys[3], (b, p, hkv, dh)), _rand(keys[4], (b, p, hkv, dh))
    prompt_valid = jnp.asarray(np.arange(p)[None] >= np.array([0, 30])[:, None])
    resp_valid = jnp.asarray(np.arange(t)[None, None] < np.array([[64, 40, 9, 1]] * 2)[..., None])
    weight = _rand(keys[5], (b, g, t, hq, dh)) * resp_valid[..., None, None]
    args = (q, k, v, pk, pv)
    bf16 = tuple(x.astype(jnp.bfloat16) for x in args)

    def loss(fn, *xs):
        out = fn(*xs, prompt_valid, resp_valid).astype(jnp.float32)
        return jnp.sum(out * weight), out

    def cudnn(*xs):
        return attention.grouped_response_attention_dpa(*xs, "cudnn")

    argnums = tuple(range(1, 6))
    (_, ref), g_ref = jax.value_and_grad(loss, argnums, has_aux=True)(
        attention.grouped_response_attention, *args
    )
    (_, out), g_out = jax.value_and_grad(loss, argnums, has_aux=True)(cudnn, *bf16)
    real = np.asarray(resp_valid)

    def rel(a, c):
        return np.linalg.norm(np.asarray(a, np.float32) - c) / np.linalg.norm(c)

    assert rel(np.asarray(out)[real], np.asarray(ref)[real]) < 2e-2
    for a, c in zip(g_out, g_ref):
        assert rel(a, np.asarray(c)) < 3e-2
    causal = jax.jit(lambda *x: attention.causal_attention_dpa(*x, prompt_valid, "cudnn"))
    pq = _rand(keys[0], (b, p, hq, dh))
    out = causal(*(x.astype(jnp.bfloat16) for x in (pq, pk, pv)))
    ref = attention.causal_attention(pq, pk, pv, prompt_valid)
    mask = np.asarray(prompt_valid)
    assert rel(np.asarray(out)[mask], np.asarray(ref)[mask]) < 2e-2
