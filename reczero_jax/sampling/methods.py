"""Sampling methods as small frozen dataclasses, and the one function that draws a token.

The log-probability returned for a sampled token is always
``log_softmax(logits / temperature)[token]`` over the FULL vocabulary: the distribution
the GRPO trainer recomputes (it applies the same temperature and no top-k / top-p
truncation). Greedy decoding reports ``log_softmax(logits)[argmax]`` (temperature 1).

A sampled token is drawn by inverse transform: one uniform u per row against the
running sum of the (truncated) probabilities, token = the first index whose running sum
exceeds u * total. It draws from exactly the categorical distribution, with ONE random
number per row where the Gumbel-max trick (``jax.random.categorical``) needs one per
vocabulary entry: on CPU those [N, V] random bits cost more than the rest of a small
model's decode step. Float32 rounding of the running sum moves each token's probability
by at most one rounding error of the sum (~6e-8 absolute); tokens of probability 0
(truncated by top-k / top-p) are never drawn.
"""

from __future__ import annotations

import dataclasses

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


def _truncate(scaled_nv: jax.Array, method: Sampling) -> jax.Array:
    """Sets logits outside the top-k / top-p set to -inf."""
    neg_inf = jnp.finfo(scaled_nv.dtype).min
    if method.top_k > 0 and method.top_k < scaled_nv.shape[-1]:
        kth = jax.lax.top_k(scaled_nv, method.top_k)[0][..., -1:]
        scaled_nv = jnp.where(scaled_nv < kth, neg_inf, scaled_nv)
    if method.top_p < 1.0:
        sorted_desc = jnp.sort(scaled_nv, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(sorted_desc, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly better tokens
        keep = mass_before < method.top_p  # the first token is always kept
        threshold = jnp.min(jnp.where(keep, sorted_desc, jnp.inf), axis=-1, keepdims=True)
        scaled_nv = jnp.where(scaled_nv < threshold, neg_inf, scaled_nv)
    return scaled_nv


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
        logp_nv = jax.nn.log_softmax(logits_nv, axis=-1)
    else:
        scaled = logits_nv / method.temperature
        logp_nv = jax.nn.log_softmax(scaled, axis=-1)
        tokens = inverse_cdf_draw(jax.nn.softmax(_truncate(scaled, method), axis=-1), key)
    logprobs = jnp.take_along_axis(logp_nv, tokens[:, None], axis=-1)[:, 0]
    return tokens, logprobs


def inverse_cdf_draw(probs_nv: jax.Array, key: jax.Array) -> jax.Array:
    """int32 [N]: one index per row drawn with probabilities ``probs_nv`` [N, V] (rows
    summing to about 1; see the module docstring)."""
    cdf = jnp.cumsum(probs_nv.astype(jnp.float32), axis=-1)  # [N, V]
    u = jax.random.uniform(key, (probs_nv.shape[0], 1), jnp.float32) * cdf[:, -1:]
    index = jnp.sum(cdf <= u, axis=-1)  # the first index whose running sum exceeds u
    return jnp.minimum(index, probs_nv.shape[-1] - 1).astype(jnp.int32)
