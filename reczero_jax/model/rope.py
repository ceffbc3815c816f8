"""Rotary position embeddings (RoPE), with Llama 3 frequency scaling.

Numerics follow transformers: inverse frequencies in float32, angles = positions x
inv_freq in float32, the "rotate half" convention (the first and second halves of each
head are the two coordinates of each rotated pair).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from reczero_jax.model.model_config import ModelConfig


def inverse_frequencies(config: ModelConfig) -> np.ndarray:
    """float32 [Dh / 2] inverse frequencies, Llama 3 scaling applied when configured."""
    dim = config.head_dim
    exponents = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
    inv_freq = (1.0 / (np.float32(config.rope_theta) ** exponents)).astype(np.float32)
    scaling = config.rope_scaling
    if scaling is None:
        return inv_freq
    old_len = scaling.original_max_position_embeddings
    low_wavelen = old_len / scaling.low_freq_factor
    high_wavelen = old_len / scaling.high_freq_factor
    wavelen = (2 * math.pi / inv_freq).astype(np.float32)
    scaled = np.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (old_len / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def apply_rope(x_bthd: jnp.ndarray, positions_bt: jnp.ndarray, inv_freq: np.ndarray) -> jnp.ndarray:
    """Rotates ``x`` [B, T, H, Dh] by the angles of ``positions`` [B, T] (int)."""
    angles = positions_bt.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # [B, T, Dh/2]
    cos = jnp.cos(angles)[:, :, None, :]  # [B, T, 1, Dh/2]
    sin = jnp.sin(angles)[:, :, None, :]
    x = x_bthd.astype(jnp.float32)
    x1, x2 = jnp.split(x, 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_bthd.dtype)
