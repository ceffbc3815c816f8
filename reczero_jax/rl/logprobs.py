"""Token log-probabilities from hidden states, in chunks, never materialising
[batch, length, vocab] logits.

For hidden states h [R, T, D] (R rows; any leading shape is flattened), targets y [R, T]
and the output projection W [D, V]:

    logits = (h @ W) / temperature                 (float32)
    logp_t = logits[y_t] - logsumexp(logits)
    entropy_t = logsumexp(logits) - sum(softmax(logits) * logits)

The T axis is processed ``chunk`` positions at a time inside a ``lax.scan``. With
``remat`` (the default) the scan's body is rematerialised, so the backward pass recomputes
each chunk's logits instead of storing them: peak memory is O(R * chunk * V) instead of
O(R * T * V), for one more [R*T, D] x [D, V] product. Without it the backward reads the
stored logits (faster where O(R * T * V) memory is cheap: small models and batches).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from reczero_jax.model.decoder import logits_from_hidden


def token_logprobs(
    hidden: jax.Array,
    kernel_dv: jax.Array,
    targets: jax.Array,
    temperature: float = 1.0,
    chunk: int = 64,
    dtype: Any = jnp.float32,
    remat: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """(logp, entropy), float32 with the shape of ``targets`` ([..., T]); ``remat``:
    recompute each chunk's logits in the backward pass (module docstring)."""
    lead, (t, d) = hidden.shape[:-2], hidden.shape[-2:]
    h = hidden.reshape(-1, t, d)
    y = targets.reshape(-1, t).astype(jnp.int32)
    chunk = max(1, min(chunk, t))
    pad = (-t) % chunk
    if pad:
        h = jnp.pad(h, ((0, 0), (0, pad), (0, 0)))
        y = jnp.pad(y, ((0, 0), (0, pad)))
    n_chunks = (t + pad) // chunk
    h_c = h.reshape(h.shape[0], n_chunks, chunk, d).swapaxes(0, 1)  # [C, R, chunk, D]
    y_c = y.reshape(y.shape[0], n_chunks, chunk).swapaxes(0, 1)

    def one_chunk(h_rcd, y_rc):
        logits = logits_from_hidden(h_rcd, kernel_dv, dtype) / temperature  # [R, chunk, V]
        lse = jax.nn.logsumexp(logits, axis=-1)
        picked = jnp.take_along_axis(logits, y_rc[..., None], axis=-1)[..., 0]
        probs = jnp.exp(logits - lse[..., None])
        entropy = lse - jnp.sum(probs * logits, axis=-1)
        return picked - lse, entropy

    chunk_fn = jax.checkpoint(one_chunk) if remat else one_chunk

    def body(carry, xs):
        return carry, chunk_fn(*xs)

    _, (logp, entropy) = jax.lax.scan(body, None, (h_c, y_c))
    logp = logp.swapaxes(0, 1).reshape(-1, t + pad)[:, :t]
    entropy = entropy.swapaxes(0, 1).reshape(-1, t + pad)[:, :t]
    return logp.reshape(*lead, t), entropy.reshape(*lead, t)
