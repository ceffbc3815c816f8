"""Per-token policy losses and their exact aggregation.

Notation per response token: logp (current policy), old (behaviour policy, from the
sampler), ref (frozen starting policy), A (the response's advantage), m (1 on real
response tokens).

* Clipped surrogate (PPO), with the log-ratio clamped to [-20, 20]:
      ratio = exp(clamp(logp - old))
      pg    = max(-A * ratio, -A * clip(ratio, 1 - eps_low, 1 + eps_high))
  and, with ``dual_clip_c`` > 1, for A < 0: pg = min(pg, -A * c).
* KL to the reference policy (only when its weight is > 0):
      k3 = exp(d) - d - 1,  d = clamp(ref - logp, -20, 20)   (default; result clamped to
                                                              [-10, 10])
      k2 = (logp - ref)^2 / 2
  The clamp of d before ``exp`` keeps a huge log-ratio from overflowing to inf (whose
  gradient is NaN even where the result is clamped afterwards).
* Aggregation of a per-token loss l over a mini-batch (divide ONCE, after summing over
  every micro-batch, so any micro-batch size gives the same gradient):
      token-mean            sum(l * m) / sum(m)
      seq-mean-token-mean   sum_n (sum_t l * m / sum_t m) / N
      dr_grpo               sum(l * m) / (N * T_max)
  :func:`aggregate_numerator` gives the part summed over micro-batches and
  :func:`aggregate_denominator` the divisor computed from the whole mini-batch.

The two training losses, :func:`grpo_loss` and :func:`sft_loss`, return that numerator
and a dict of per-token sums for the metrics; each takes only the arrays it needs.
"""

from __future__ import annotations

import dataclasses

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
        d = jnp.clip(ref_logp - logp, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
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


@dataclasses.dataclass(frozen=True)
class GRPOLoss:
    """The GRPO objective's settings (hashable: part of the compiled train step).

    Attributes:
      aggregation: one of AGGREGATIONS.
      eps_low / eps_high: PPO clip range [1 - eps_low, 1 + eps_high].
      dual_clip_c: dual-clip constant for negative advantages (<= 1: off).
      kl_coef / kl_estimator: weight and estimator of the KL term (0: no reference needed).
      entropy_coef: weight of the entropy bonus (subtracted from the loss).
    """

    aggregation: str = "token-mean"
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip_c: float = 3.0
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0

    def __post_init__(self):
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}")


def grpo_loss(
    logp: jax.Array,
    entropy: jax.Array,
    old_logp: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    ref_logp: jax.Array | None,
    loss: GRPOLoss,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(aggregation numerator, metric sums) of the GRPO loss.

    Args:
      logp / entropy: float32 [..., T] under the current policy.
      old_logp: float32 [..., T] behaviour log-probs (the sampler's).
      advantages: float32 [...], one per response.
      mask: bool [..., T], True on real response tokens.
      ref_logp: float32 [..., T] reference log-probs; None when ``loss.kl_coef == 0``.
    Per token: clipped surrogate + kl_coef * KL - entropy_coef * entropy.
    """
    t = logp.shape[-1]
    rows = lambda x: x.reshape(-1, t)  # noqa: E731  [N, T]
    logp2, ent2, old2, m = rows(logp), rows(entropy), rows(old_logp), rows(mask)
    adv = advantages.reshape(-1, 1)
    mf = m.astype(jnp.float32)
    per_token, clipped = clipped_surrogate(
        logp2, old2, adv, loss.eps_low, loss.eps_high, loss.dual_clip_c
    )
    sums = {
        "tokens": jnp.sum(mf),
        "entropy": jnp.sum(ent2 * mf),
        "clipped": jnp.sum(clipped.astype(jnp.float32) * mf),
        "logprob_gap": jnp.sum(jnp.abs(logp2 - old2) * mf),
        "ratio": jnp.sum(jnp.exp(jnp.clip(logp2 - old2, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)) * mf),
    }
    if loss.kl_coef > 0:
        if ref_logp is None:
            raise ValueError("kl_coef > 0 needs reference log-probs")
        kl = kl_penalty(logp2, rows(ref_logp), loss.kl_estimator)
        per_token = per_token + loss.kl_coef * kl
        sums["kl"] = jnp.sum(kl * mf)
    if loss.entropy_coef > 0:
        per_token = per_token - loss.entropy_coef * ent2
    return aggregate_numerator(per_token, m, loss.aggregation), sums


def sft_loss(
    logp: jax.Array, entropy: jax.Array, mask: jax.Array, aggregation: str = "token-mean"
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(aggregation numerator, metric sums) of the cross-entropy -logp on the response
    tokens ``mask`` (bool [..., T]); ``logp`` / ``entropy`` float32 [..., T]."""
    t = logp.shape[-1]
    logp2, m = logp.reshape(-1, t), mask.reshape(-1, t)
    mf = m.astype(jnp.float32)
    sums = {
        "tokens": jnp.sum(mf),
        "entropy": jnp.sum(entropy.reshape(-1, t) * mf),
        "nll": jnp.sum(-logp2 * mf),
    }
    return aggregate_numerator(-logp2, m, aggregation), sums
