"""Per-token policy losses and their exact aggregation.

Notation per response token: logp (current policy), old (behaviour policy, from the
sampler), ref (frozen starting policy), A (the response's advantage), m (1 on real
response tokens).

* Clipped surrogate (PPO), with the log-ratio clamped to [-20, 20]:
      ratio = exp(clamp(logp - old))
      pg    = max(-A * ratio, -A * clip(ratio, 1 - eps_low, 1 + eps_high))
  and, with ``dual_clip_c`` > 1, for A < 0: pg = min(pg, -A * c).
* KL to the reference policy (only when its weight is > 0):
      k3 = exp(ref - logp) - (ref - logp) - 1     (default; clamped to [-10, 10])
      k2 = (logp - ref)^2 / 2
* Aggregation of a per-token loss l over a mini-batch (divide ONCE, after summing over
  every micro-batch, so any micro-batch size gives the same gradient):
      token-mean            sum(l * m) / sum(m)
      seq-mean-token-mean   sum_n (sum_t l * m / sum_t m) / N
      dr_grpo               sum(l * m) / (N * T_max)
  :func:`aggregate_numerator` gives the part summed over micro-batches and
  :func:`aggregate_denominator` the divisor computed from the whole mini-batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "dr_grpo")
KL_ESTIMATORS = ("k3", "k2")
LOG_RATIO_CLAMP = 20.0
K3_CLAMP = 10.0


def clipped_surrogate(
    logp: jax.Array,
    old_logp: jax.Array,
    advantages: jax.Array,
    eps_low: float,
    eps_high: float,
    dual_clip_c: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """(per-token loss, per-token clipped indicator), broadcasting ``advantages``."""
    log_ratio = jnp.clip(logp - old_logp, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = jnp.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high)
    loss = jnp.maximum(unclipped, clipped)
    was_clipped = clipped > unclipped
    if dual_clip_c > 1.0:
        lower = -advantages * dual_clip_c
        dual = (advantages < 0) & (loss > lower)
        loss = jnp.where(dual, lower, loss)
        was_clipped = was_clipped | dual
    return loss, was_clipped


def kl_penalty(logp: jax.Array, ref_logp: jax.Array, estimator: str = "k3") -> jax.Array:
    """Per-token KL(current || reference) estimate."""
    if estimator == "k3":
        d = ref_logp - logp
        return jnp.clip(jnp.exp(d) - d - 1.0, -K3_CLAMP, K3_CLAMP)
    if estimator == "k2":
        return 0.5 * (logp - ref_logp) ** 2
    raise ValueError(f"kl estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")


def aggregate_numerator(loss_nt: jax.Array, mask_nt: jax.Array, mode: str) -> jax.Array:
    """The additive part of the aggregation over rows [N, T] (see the module docstring)."""
    m = mask_nt.astype(jnp.float32)
    if mode in ("token-mean", "dr_grpo"):
        return jnp.sum(loss_nt * m)
    if mode == "seq-mean-token-mean":
        per_seq = jnp.sum(loss_nt * m, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1.0)
        return jnp.sum(per_seq)
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {mode!r}")


def aggregate_denominator(mask_nt: jax.Array, mode: str) -> jax.Array:
    """The divisor for the whole mini-batch [N, T] (at least 1)."""
    m = mask_nt.astype(jnp.float32)
    if mode == "token-mean":
        return jnp.maximum(jnp.sum(m), 1.0)
    if mode == "seq-mean-token-mean":
        return jnp.float32(max(mask_nt.shape[0], 1))
    if mode == "dr_grpo":
        return jnp.float32(max(mask_nt.shape[0] * mask_nt.shape[1], 1))
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {mode!r}")
