"""Sampling methods as small frozen dataclasses, and the one function that draws a token.

The log-probability returned for a sampled token is always
``log_softmax(logits / temperature)[token]`` over the FULL vocabulary: the distribution
the GRPO trainer recomputes (it applies the same temperature and no top-k / top-p
truncation). Greedy decoding reports ``log_softmax(logits)[argmax]`` (temperature 1).

A sampled token is drawn by inverse transform: one uniform u per row against the
running sum of the (truncated) unnormalised probabilities exp(logit - max), token = the
first index whose running sum exceeds u * total. It draws from exactly the categorical
distribution, with ONE random number per row where the Gumbel-max trick
(``jax.random.categorical``) needs one per vocabulary entry: on CPU those [N, V] random
bits cost more than the rest of a small model's decode step. The running sum is taken in
two levels (:func:`inverse_cdf_index`): over blocks of about sqrt(V) entries, then inside
the one block that holds u, so no [N, V] prefix sum is ever formed. One exp over [N, V]
serves both the draw and the reported log-probability. Float32 rounding of the sums moves
each token's probability by at most a few rounding errors of the total (~1e-7 absolute);
tokens of probability 0 (truncated by top-k / top-p) are never drawn.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

METHODS = ("sample", "greedy")  # the config names of the two methods below


@dataclasses.dataclass(frozen=True)
class Greedy:
    """Arg-max decoding."""

    @property
    def temperature(self) -> float:
        return 1.0


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Ancestral sampling from softmax(logits / temperature), optionally truncated.

    Attributes:
      temperature: > 0.
      top_k: keep the k most likely tokens (0 = off).
      top_p: keep the smallest set of most likely tokens whose mass reaches top_p
        (1.0 = off). Applied after top_k.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


Method = Greedy | Sampling


def _kept(scaled_nv: jax.Array, method: Sampling) -> jax.Array:
    """bool [N, V]: the tokens inside the top-k / top-p set (all of them when neither is
    set; the most likely token always)."""
    keep = jnp.ones(scaled_nv.shape, bool)
    if method.top_k > 0 and method.top_k < scaled_nv.shape[-1]:
        kth = jax.lax.top_k(scaled_nv, method.top_k)[0][..., -1:]
        keep = scaled_nv >= kth
    if method.top_p < 1.0:
        masked = jnp.where(keep, scaled_nv, jnp.finfo(scaled_nv.dtype).min)
        sorted_desc = jnp.sort(masked, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(sorted_desc, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly better tokens
        in_set = mass_before < method.top_p  # the first token is always kept
        threshold = jnp.min(jnp.where(in_set, sorted_desc, jnp.inf), axis=-1, keepdims=True)
        keep = keep & (scaled_nv >= threshold)
    return keep


def draw(logits_nv: jax.Array, key: jax.Array, method: Method) -> tuple[jax.Array, jax.Array]:
    """Draws one token per row.

    Args:
      logits_nv: float32 [N, V].
      key: PRNG key (unused for Greedy).
      method: Greedy() or Sampling(...).
    Returns:
      (tokens int32 [N], logprobs float32 [N]) with the log-prob convention of the
      module docstring.
    """
    logits_nv = logits_nv.astype(jnp.float32)
    if isinstance(method, Greedy):
        tokens = jnp.argmax(logits_nv, axis=-1).astype(jnp.int32)
        log_total = jax.nn.logsumexp(logits_nv, axis=-1)
        return tokens, _pick(logits_nv, tokens) - log_total
    scaled = logits_nv / method.temperature
    top = jnp.max(scaled, axis=-1, keepdims=True)  # truncation always keeps the top token
    weights = jnp.exp(scaled - top)  # [N, V] unnormalised probabilities
    log_total = top[:, 0] + jnp.log(jnp.sum(weights, axis=-1))
    truncated = method.top_k > 0 or method.top_p < 1.0
    kept = jnp.where(_kept(scaled, method), weights, 0.0) if truncated else weights
    tokens = inverse_cdf_draw(kept, key)
    return tokens, _pick(scaled, tokens) - log_total


def _pick(x_nv: jax.Array, index_n: jax.Array) -> jax.Array:
    return jnp.take_along_axis(x_nv, index_n[:, None], axis=-1)[:, 0]


def _last_positive(x: jax.Array) -> jax.Array:
    """int32 [...]: the last index along the final axis where ``x > 0`` (0 if none)."""
    index = jnp.arange(x.shape[-1], dtype=jnp.int32)
    return jnp.max(jnp.where(x > 0, index, 0), axis=-1)


def block_size(v: int) -> int:
    """Entries per block of :func:`inverse_cdf_index`'s two-level running sum: the power of
    two nearest sqrt(v), halved while it does not divide v and stays above sqrt(v) / 4 (so
    the common vocabularies need no padding: 64 for V = 4,096, 128 for Qwen2.5's 151,936,
    256 for Llama 3's 128,256); padded with zeros otherwise."""
    if v <= 1:
        return 1
    root = math.sqrt(v)
    nearest = 2 ** round(math.log2(root))
    size = nearest
    while v % size and size / 2 >= root / 4:
        size //= 2
    return size if v % size == 0 else nearest


def inverse_cdf_draw(weights_nv: jax.Array, key: jax.Array) -> jax.Array:
    """int32 [N]: one index per row drawn with probabilities proportional to
    ``weights_nv`` [N, V] (non-negative, each row with a positive entry), from one uniform
    number per row (:func:`inverse_cdf_index`)."""
    return inverse_cdf_index(weights_nv, jax.random.uniform(key, weights_nv.shape[:1]))


def inverse_cdf_index(weights_nv: jax.Array, u_n: jax.Array) -> jax.Array:
    """int32 [N]: the first index whose running sum of ``weights_nv`` [N, V] exceeds
    ``u_n`` [N] (in [0, 1)) times the row's total.

    The running sum is taken in two levels: the block of :func:`block_size` entries that
    holds the point is found on the running sum of the block sums, then the index inside
    that block on the block's own running sum. Where float rounding pushes the point past
    the last positive entry, the last positive entry is returned, so an entry of weight 0
    is never returned.
    """
    n, v = weights_nv.shape
    size = block_size(v)
    blocks = -(-v // size)
    w = weights_nv.astype(jnp.float32)
    if blocks * size != v:
        w = jnp.pad(w, ((0, 0), (0, blocks * size - v)))
    w = w.reshape(n, blocks, size)
    block_sum = jnp.sum(w, axis=-1)  # [N, blocks]
    block_cdf = jnp.cumsum(block_sum, axis=-1)
    point = u_n.astype(jnp.float32) * block_cdf[:, -1]
    block = jnp.sum(block_cdf <= point[:, None], axis=-1)
    block = jnp.minimum(block, _last_positive(block_sum))
    inner = jnp.take_along_axis(w, block[:, None, None], axis=1)[:, 0]  # [N, size]
    before = _pick(block_cdf - block_sum, block)  # the mass of the blocks before it
    rest = jnp.maximum(point - before, 0.0)
    offset = jnp.sum(jnp.cumsum(inner, axis=-1) <= rest[:, None], axis=-1)
    offset = jnp.minimum(offset, _last_positive(inner))
    return (block * size + offset).astype(jnp.int32)
