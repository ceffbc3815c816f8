"""Grouped-query attention as pure functions: full (causal) and decode over a shared prompt.

Shapes: B prompts, G samples per prompt, N = B * G rows, T query length, S key length,
Hkv key/value heads, R = Hq / Hkv query heads per key/value head, Dh head width.

Softmax and score accumulation run in float32 whatever the compute dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_NEG = -1e30  # additive mask value; finite so fully-masked rows stay NaN-free


# The training attention's kernels: 'einsum' (this module's batched products, any backend)
# or 'cudnn' (cuDNN's fused attention through jax.nn.dot_product_attention; NVIDIA GPUs,
# bfloat16). KERNEL_IMPLEMENTATION maps each non-einsum kernel to the implementation
# argument of jax.nn.dot_product_attention.
KERNELS = ("einsum", "cudnn")
KERNEL_IMPLEMENTATION = {"cudnn": "cudnn"}

QUERY_BLOCK = 128  # query positions per block of the causal attention (at least)
MAX_QUERY_BLOCKS = 8  # longer sequences get longer blocks


def _query_blocks(t: int) -> list[tuple[int, int]]:
    """[lo, hi) query blocks of a causal attention over ``t`` positions."""
    size = max(QUERY_BLOCK, -(-t // MAX_QUERY_BLOCKS))
    return [(lo, min(lo + size, t)) for lo in range(0, t, size)]


def causal_attention(
    q_bthd: jax.Array, k_bskd: jax.Array, v_bskd: jax.Array, key_valid_bs: jax.Array
) -> jax.Array:
    """Causal self-attention over one sequence per row (training forward and prefill).

    Query i attends to key j iff j <= i (by index) and ``key_valid[j]``. Left padding is
    expressed through ``key_valid``.

    The queries are processed in blocks (:func:`_query_blocks`); a block ending at
    position ``hi`` reads only the keys before ``hi``, so the masked upper triangle is
    mostly never computed (for 8 blocks, 44% of the score matrix is skipped). Scores are
    laid out heads-major, [B, Hkv, R * block, S], one batched matrix product per block,
    and masked by adding 0 or -1e30; on XLA:CPU this runs about 3x faster, forward and
    backward, than one masked [B, Hkv, R, T, S] product at T = 1024.

    Args:
      q_bthd: [B, T, Hq, Dh] queries (RoPE applied).
      k_bskd, v_bskd: [B, T, Hkv, Dh] keys and values (S == T).
      key_valid_bs: bool [B, T], True on real tokens.
    Returns:
      [B, T, Hq, Dh] in the dtype of ``v``.
    """
    b, t, hq, dh = q_bthd.shape
    hkv = k_bskd.shape[2]
    r = hq // hkv
    q = _scaled(q_bthd).reshape(b, t, hkv, r, dh).transpose(0, 2, 3, 1, 4)  # [B, Hkv, R, T, Dh]
    k = k_bskd.transpose(0, 2, 1, 3)  # [B, Hkv, S, Dh]
    v = v_bskd.transpose(0, 2, 1, 3)
    outs = []
    for lo, hi in _query_blocks(t):
        n = hi - lo
        scores = jnp.einsum(
            "bkqd,bksd->bkqs",
            q[:, :, :, lo:hi].reshape(b, hkv, r * n, dh),
            k[:, :, :hi],
            preferred_element_type=jnp.float32,
        )
        allowed = (jnp.arange(lo, hi)[:, None] >= jnp.arange(hi)[None, :])[None] & key_valid_bs[
            :, None, :hi
        ]  # [B, n, hi]
        bias = jnp.where(allowed, 0.0, _NEG).astype(jnp.float32)
        scores = scores.reshape(b, hkv, r, n, hi) + bias[:, None, None]
        weights, denom = _unnormalised_softmax(scores)
        out = jnp.einsum(
            "bkqs,bksd->bkqd",
            weights.astype(v.dtype).reshape(b, hkv, r * n, hi),
            v[:, :, :hi],
            preferred_element_type=jnp.float32,
        )
        outs.append(out.reshape(b, hkv, r, n, dh) / denom)
    out = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=3)
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, hq, dh).astype(v_bskd.dtype)


def _scaled(q: jax.Array) -> jax.Array:
    """Queries times 1 / sqrt(Dh): scaled before the product, not the [.., S] scores after."""
    return q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)


def _unnormalised_softmax(scores: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(exp(scores - max), their sum) along the last axis, float32, the sum with a
    trailing axis of 1.

    The training attentions divide the [.., Dh] output of the value product by the sum
    instead of the [.., S] weights before it: one pass less over the score matrix forward
    and backward (about 13% of the grouped attention's gradient at the peers' shape on
    XLA:CPU). The max is a constant of the gradient (the result does not depend on it).
    """
    top = jax.lax.stop_gradient(scores.max(axis=-1, keepdims=True))
    weights = jnp.exp(scores - top)
    return weights, weights.sum(axis=-1, keepdims=True)


def shared_prompt_decode_attention(
    q_nhd: jax.Array,
    k_new_nkd: jax.Array,
    v_new_nkd: jax.Array,
    prompt_k_bkdp: jax.Array,
    prompt_v_bkpd: jax.Array,
    prompt_valid_bp: jax.Array,
    gen_k_nkdt: jax.Array,
    gen_v_nktd: jax.Array,
    gen_valid_t: jax.Array,
) -> jax.Array:
    """One decode step for N = B * G rows whose G samples share one prompt KV cache.

    Each query attends to three segments under one softmax: its prompt's cache (stored
    once per prompt, read by all G samples), the row's own earlier generated tokens, and
    the row's current token. The current token comes either as ``k_new`` / ``v_new``
    (the scanned decode step: the caller writes it into the cache afterwards) or already
    written into the generated cache at a slot that ``gen_valid_t`` marks (``k_new`` and
    ``v_new`` None: the unrolled decode step, which writes before it reads so that XLA
    updates each layer's cache in place).

    The segments are never concatenated: each gets its scores, they share one max and
    one denominator, and each segment's value product is summed into the output, which
    is divided by the denominator last (as the training attentions do). The prompt
    segment runs heads-major, one [G * R, Dh] x [Dh, P] and one [G * R, P] x [P, Dh]
    product per (prompt, KV head).

    Keys are stored with their slots last ([.., Dh, P] and [.., Dh, Tg]): every score
    product is then a plain [rows, Dh] x [Dh, slots] product, which XLA:CPU's YNNPACK runs
    about twice as fast as the same product against [slots, Dh] keys.

    Args:
      q_nhd: [N, Hq, Dh] the current token's queries.
      k_new_nkd, v_new_nkd: [N, Hkv, Dh] the current token's key and value, or None.
      prompt_k_bkdp: [B, Hkv, Dh, P] the prompt's keys (left-padded prompts).
      prompt_v_bkpd: [B, Hkv, P, Dh] the prompt's values.
      prompt_valid_bp: bool [B, P], True on real prompt tokens.
      gen_k_nkdt: [N, Hkv, Dh, Tg] (or [B, G, Hkv, Dh, Tg]) generated-token keys.
      gen_v_nktd: [N, Hkv, Tg, Dh] (or [B, G, Hkv, Tg, Dh]) generated-token values.
      gen_valid_t: bool [Tg], True on cache slots to attend to (slot < current step, or
        <= it when the cache already holds the current token).
    Returns:
      [N, Hq, Dh] in the dtype of the generated cache.
    """
    n, hq, dh = q_nhd.shape
    b, hkv, _, p = prompt_k_bkdp.shape
    g = n // b
    tg = gen_v_nktd.shape[-2]
    r = hq // hkv
    f32 = jnp.float32
    dtype = gen_v_nktd.dtype
    q = _scaled(q_nhd).reshape(b, g, hkv, r, dh)
    q_heads = q.transpose(0, 2, 1, 3, 4).reshape(b, hkv, g * r, dh)  # [B, Hkv, G*R, Dh]
    s_prompt = jnp.einsum("bkqd,bkdp->bkqp", q_heads, prompt_k_bkdp, preferred_element_type=f32)
    s_prompt = jnp.where(prompt_valid_bp[:, None, None, :], s_prompt, _NEG)
    gen_k = gen_k_nkdt.reshape(b, g, hkv, dh, tg)
    gen_v = gen_v_nktd.reshape(b, g, hkv, tg, dh)
    s_gen = jnp.einsum("bgkrd,bgkdt->bgkrt", q, gen_k, preferred_element_type=f32)
    s_gen = jnp.where(gen_valid_t, s_gen, _NEG)  # [B, G, Hkv, R, Tg]

    def rows_major(x_bkq):  # [B, Hkv, G*R] -> [B, G, Hkv, R]
        return x_bkq.reshape(b, hkv, g, r).transpose(0, 2, 1, 3)

    top = jnp.maximum(rows_major(s_prompt.max(axis=-1)), s_gen.max(axis=-1))  # [B,G,Hkv,R]
    if k_new_nkd is not None:
        k_new = k_new_nkd.reshape(b, g, hkv, dh)
        s_self = jnp.einsum("bgkrd,bgkd->bgkr", q, k_new, preferred_element_type=f32)
        top = jnp.maximum(top, s_self)
    top_heads = top.transpose(0, 2, 1, 3).reshape(b, hkv, g * r, 1)
    w_prompt = jnp.exp(s_prompt - top_heads)  # [B, Hkv, G*R, P]
    w_gen = jnp.exp(s_gen - top[..., None])  # [B, G, Hkv, R, Tg]
    total = rows_major(w_prompt.sum(axis=-1)) + w_gen.sum(axis=-1)
    out = jnp.einsum(
        "bkqp,bkpd->bkqd", w_prompt.astype(dtype), prompt_v_bkpd, preferred_element_type=f32
    )
    out = out.reshape(b, hkv, g, r, dh).transpose(0, 2, 1, 3, 4)  # [B, G, Hkv, R, Dh]
    out += jnp.einsum("bgkrt,bgktd->bgkrd", w_gen.astype(dtype), gen_v, preferred_element_type=f32)
    if k_new_nkd is not None:
        w_self = jnp.exp(s_self - top)
        total += w_self
        v_new = v_new_nkd.reshape(b, g, hkv, 1, dh)
        out += w_self.astype(dtype)[..., None].astype(f32) * v_new.astype(f32)
    out = out / total[..., None]
    return out.reshape(n, hq, dh).astype(dtype)


def grouped_response_attention(
    q_bgtkd: jax.Array,
    k_bgtkd: jax.Array,
    v_bgtkd: jax.Array,
    prompt_k_bpkd: jax.Array,
    prompt_v_bpkd: jax.Array,
    prompt_valid_bp: jax.Array,
    resp_valid_bgt: jax.Array,
) -> jax.Array:
    """Attention of G responses per prompt over their shared prompt and their own past.

    Response g of prompt b, token t attends to every real token of prompt b and to tokens
    s <= t of response g (where ``resp_valid``), under one softmax. The prompt's keys and
    values are computed once per prompt, not once per response.

    Args:
      q_bgtkd: [B, G, T, Hq, Dh] response queries.
      k_bgtkd, v_bgtkd: [B, G, T, Hkv, Dh] response keys and values.
      prompt_k_bpkd, prompt_v_bpkd: [B, P, Hkv, Dh] prompt keys and values.
      prompt_valid_bp: bool [B, P]; resp_valid_bgt: bool [B, G, T].
    Returns:
      [B, G, T, Hq, Dh] in the dtype of ``v``.
    """
    b, g, t, hq, dh = q_bgtkd.shape
    hkv = k_bgtkd.shape[3]
    p = prompt_k_bpkd.shape[1]
    r = hq // hkv
    f32 = jnp.float32
    dtype = v_bgtkd.dtype
    # heads-major layouts: one batched product per segment, the G * T * R queries of a
    # prompt's kv-head against its P prompt keys, each answer's R * T against its own T
    q = _scaled(q_bgtkd).reshape(b, g, t, hkv, r, dh).transpose(0, 3, 1, 4, 2, 5)
    # q: [B, Hkv, G, R, T, D]
    k_self = k_bgtkd.transpose(0, 3, 1, 2, 4)  # [B, Hkv, G, T, D]
    v_self = v_bgtkd.transpose(0, 3, 1, 2, 4)
    k_prompt = prompt_k_bpkd.transpose(0, 2, 1, 3)  # [B, Hkv, P, D]
    v_prompt = prompt_v_bpkd.transpose(0, 2, 1, 3)
    s_prompt = jnp.einsum(
        "bkqd,bkpd->bkqp",
        q.reshape(b, hkv, g * r * t, dh),
        k_prompt,
        preferred_element_type=f32,
    )  # [B, Hkv, G*R*T, P]
    s_prompt = s_prompt + jnp.where(prompt_valid_bp, 0.0, _NEG).astype(f32)[:, None, None, :]
    s_self = jnp.einsum(
        "bkgqd,bkgsd->bkgqs",
        q.reshape(b, hkv, g, r * t, dh),
        k_self,
        preferred_element_type=f32,
    )  # [B, Hkv, G, R*T, T]
    causal = jnp.tril(jnp.ones((t, t), dtype=bool))
    self_ok = causal[None, None] & resp_valid_bgt[:, :, None, :]  # [B, G, T, S]
    self_bias = jnp.where(self_ok, 0.0, _NEG).astype(f32)[:, None, :, None]  # [B,1,G,1,T,S]
    s_self = s_self.reshape(b, hkv, g, r, t, t) + self_bias
    # One softmax over both segments without concatenating them: a shared max (the
    # result does not depend on it, so no gradient flows through it) and one denominator,
    # which divides the [.., Dh] output (see _unnormalised_softmax).
    s_prompt = s_prompt.reshape(b, hkv, g, r, t, p)
    top = jax.lax.stop_gradient(jnp.maximum(s_prompt.max(axis=-1), s_self.max(axis=-1)))[
        ..., None
    ]  # [B, Hkv, G, R, T, 1]
    e_prompt = jnp.exp(s_prompt - top)
    e_self = jnp.exp(s_self - top)
    denom = e_prompt.sum(axis=-1, keepdims=True) + e_self.sum(axis=-1, keepdims=True)
    out = jnp.einsum(
        "bkqp,bkpd->bkqd",
        e_prompt.astype(dtype).reshape(b, hkv, g * r * t, p),
        v_prompt,
        preferred_element_type=f32,
    ).reshape(b, hkv, g, r, t, dh)
    out += jnp.einsum(
        "bkgqs,bkgsd->bkgqd",
        e_self.astype(dtype).reshape(b, hkv, g, r * t, t),
        v_self,
        preferred_element_type=f32,
    ).reshape(b, hkv, g, r, t, dh)
    out = out / denom
    # [B, Hkv, G, R, T, D] -> [B, G, T, Hq, D]
    return out.transpose(0, 2, 4, 1, 3, 5).reshape(b, g, t, hq, dh).astype(dtype)


# ---- the same two training attentions through jax.nn.dot_product_attention --------------
#
# ``implementation='cudnn'`` runs cuDNN's fused (flash) attention on NVIDIA GPUs: no score
# matrix is written to memory. It needs bfloat16 or float16 inputs and a head width that is
# a multiple of 8 (at most 256 on Hopper). ``'xla'`` runs JAX's reference implementation of
# the same call on any backend (the tests use it to check the formulation on CPU).


def causal_attention_dpa(
    q_bthd: jax.Array,
    k_bskd: jax.Array,
    v_bskd: jax.Array,
    key_valid_bs: jax.Array,
    implementation: str,
) -> jax.Array:
    """:func:`causal_attention`'s contract through ``jax.nn.dot_product_attention``:
    causal by index, left padding as a key mask. Rows whose query sits on padding (no
    valid key at or before it) are undefined, as in :func:`causal_attention`."""
    b, t = key_valid_bs.shape
    mask = jnp.broadcast_to(key_valid_bs[:, None, None, :], (b, 1, t, t))
    out = jax.nn.dot_product_attention(
        q_bthd, k_bskd, v_bskd, mask=mask, is_causal=True, implementation=implementation
    )
    return out.astype(v_bskd.dtype)


def grouped_response_attention_dpa(
    q_bgtkd: jax.Array,
    k_bgtkd: jax.Array,
    v_bgtkd: jax.Array,
    prompt_k_bpkd: jax.Array,
    prompt_v_bpkd: jax.Array,
    prompt_valid_bp: jax.Array,
    resp_valid_bgt: jax.Array,
    implementation: str,
) -> jax.Array:
    """:func:`grouped_response_attention`'s contract through ``jax.nn.dot_product_attention``.

    Each of the B * G answers becomes one attention over P + T keys: its prompt's keys and
    values (broadcast to the G answers: [B*G, P, Hkv, Dh], small next to the scores the
    fused kernel never writes; their gradients are summed back over G) followed by its own,
    under the mask "a real prompt token, or an own real token at or before the query".
    """
    b, g, t, hq, dh = q_bgtkd.shape
    hkv = k_bgtkd.shape[3]
    p = prompt_k_bpkd.shape[1]

    def keys(prompt_bpkd, own_bgtkd):
        shared = jnp.broadcast_to(prompt_bpkd[:, None], (b, g, p, hkv, dh))
        return jnp.concatenate([shared, own_bgtkd], axis=2).reshape(b * g, p + t, hkv, dh)

    causal = jnp.tril(jnp.ones((t, t), dtype=bool))
    mask = jnp.concatenate(
        [
            jnp.broadcast_to(prompt_valid_bp[:, None, None, :], (b, g, t, p)),
            causal[None, None] & resp_valid_bgt[:, :, None, :],
        ],
        axis=-1,
    ).reshape(b * g, 1, t, p + t)
    out = jax.nn.dot_product_attention(
        q_bgtkd.reshape(b * g, t, hq, dh),
        keys(prompt_k_bpkd, k_bgtkd),
        keys(prompt_v_bpkd, v_bgtkd),
        mask=mask,
        implementation=implementation,
    )
    return out.reshape(b, g, t, hq, dh).astype(v_bgtkd.dtype)
