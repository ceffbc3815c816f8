"""Variants of GRPO against group collapse that act on a rollout before the loss.

* **Dynamic sampling** (DAPO; verl's group filter). A group whose G rewards are all equal
  has zero advantages: it adds nothing to the policy gradient and only dilutes the batch.
  The step keeps the *informative* groups (reward spread > 0) and refills itself from
  further prompts, at most ``max_rounds`` rollouts of B prompts per step. When the cap is
  reached with fewer than B informative groups, the batch is topped up with
  uninformative ones (zero advantage: they move only the KL and entropy terms), so every
  step has B groups and the train step compiles once.
* **Soft overlong punishment** (DAPO). For an answer of L tokens with the limit L_max
  (``sampling.max_new_tokens``) and a buffer of L_c tokens below it:

      penalty(L) = 0                             L <= L_max - L_c
                   (L_max - L_c - L) / L_c       L_max - L_c < L <= L_max, stopped
                   -1                            cut at L_max (never stopped)

  times ``factor``, added to the reward before the advantages.
* **Overlong filtering** (DAPO). Answers cut at the limit are masked out of the loss
  (their reward still enters their group's advantages).

Everything here is pure array math (numpy for the host-side selection, jnp for the
per-answer terms), importable alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def informative_groups(rewards_bg) -> np.ndarray:
    """bool [B]: True where a group's G rewards are not all equal (float [B, G])."""
    r = np.asarray(rewards_bg, np.float32)
    return ~np.all(r == r[:, :1], axis=-1)


def select_groups(informative: np.ndarray, size: int) -> np.ndarray:
    """int64 [size]: which of N candidate groups (``informative`` bool [N], in the order
    they were sampled) form the batch: the first ``size`` informative ones, then, if there
    are fewer, the first uninformative ones, each time in sampling order."""
    informative = np.asarray(informative, bool)
    if informative.shape[0] < size:
        raise ValueError(f"{informative.shape[0]} candidate groups cannot fill {size}")
    order = np.concatenate([np.flatnonzero(informative), np.flatnonzero(~informative)])
    return np.sort(order[:size])


def soft_overlong_penalty(
    lengths: jax.Array, stopped: jax.Array, max_len: int, buffer: int, factor: float = 1.0
) -> jax.Array:
    """float32 [...] penalties (<= 0) of answers of ``lengths`` int [...] tokens;
    ``stopped`` bool [...] False for an answer cut at ``max_len`` (see the module
    docstring). ``buffer`` 0 penalises only cut answers."""
    length = jnp.asarray(lengths, jnp.float32)
    start = float(max_len - buffer)
    ramp = (start - length) / float(max(buffer, 1))
    inside = jnp.where(length > start, jnp.clip(ramp, -1.0, 0.0), 0.0)
    return factor * jnp.where(jnp.asarray(stopped), inside, -1.0).astype(jnp.float32)


def overlong_mask(resp_mask: jax.Array, stopped: jax.Array) -> jax.Array:
    """``resp_mask`` bool [..., T] with the rows of answers cut at the limit
    (``stopped`` bool [...] False) switched off."""
    return resp_mask & jnp.asarray(stopped)[..., None]
