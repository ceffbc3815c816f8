"""Group-relative advantages.

For a group of G rewards r_1..r_G of one prompt:

    A_i = (r_i - mean(r)) / (std(r) + eps)

* ``std='unbiased'`` (default; the reference code's numerics): std with N - 1 in the
  denominator, eps = 1e-6; a group of one gets its raw reward, A = r.
* ``std='population'``: std with N in the denominator.
* ``std='none'`` (Dr.GRPO): A_i = r_i - mean(r), no division.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

STD_MODES = ("unbiased", "population", "none")


def group_advantages(rewards_bg: jax.Array, std: str = "unbiased", eps: float = 1e-6) -> jax.Array:
    """float32 [B, G] advantages from float32 [B, G] rewards (one row per prompt)."""
    if std not in STD_MODES:
        raise ValueError(f"std must be one of {STD_MODES}, got {std!r}")
    r = rewards_bg.astype(jnp.float32)
    g = r.shape[-1]
    if g == 1 and std != "none":
        return r  # the reference code's rule for a group of one
    centred = r - r.mean(axis=-1, keepdims=True)
    if std == "none":
        return centred
    ddof = 1 if std == "unbiased" else 0
    sd = jnp.sqrt(jnp.sum(centred**2, axis=-1, keepdims=True) / (g - ddof))
    return centred / (sd + eps)
