"""RoPE tables and rotation against a plain numpy reference of transformers' rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reczero_jax.model.rope import apply_rope, rope_tables


def _reference(x, positions, inv_freq):
    """transformers' rotate-half rule in float64: x * cos + rotate_half(x) * sin."""
    angles = positions[..., None].astype(np.float64) * inv_freq.astype(np.float64)
    cos = np.concatenate([np.cos(angles)] * 2, -1)[:, :, None, :]
    sin = np.concatenate([np.sin(angles)] * 2, -1)[:, :, None, :]
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    inv_freq = (1.0 / 10000.0 ** (np.arange(0, 16, 2) / 16)).astype(np.float32)
    positions = rng.integers(0, 3000, (2, 5)).astype(np.int32)
    x = rng.standard_normal((2, 5, 3, 16)).astype(np.float32)
    return x, positions, inv_freq


def test_materialised_tables_equal_the_elementwise_ones_bit_for_bit(inputs):
    _, positions, inv_freq = inputs
    through_product = jax.jit(lambda p: rope_tables(p, inv_freq, materialise=True))(positions)
    elementwise = jax.jit(lambda p: rope_tables(p, inv_freq, materialise=False))(positions)
    for a, b in zip(through_product, elementwise, strict=True):
        assert a.shape == (2, 5, 8) and a.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("materialise", [True, False])
def test_rotation_matches_the_reference(inputs, materialise):
    x, positions, inv_freq = inputs
    out = apply_rope(jnp.asarray(x), rope_tables(jnp.asarray(positions), inv_freq, materialise))
    # float32 angles up to 3,000 rad: the reference's float64 angles differ by ~1e-4 there
    np.testing.assert_allclose(np.asarray(out), _reference(x, positions, inv_freq), atol=2e-3)
    # position 0 is the identity
    zero = apply_rope(jnp.asarray(x), rope_tables(jnp.zeros((2, 5), jnp.int32), inv_freq))
    np.testing.assert_array_equal(np.asarray(zero), x)
