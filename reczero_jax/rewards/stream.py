"""Token ids -> compact UTF-8 byte stream, on device, without a [N, T, M] intermediate.

For each row n the live tokens (``t < lengths_n[n]`` and ``0 <= id < V``) contribute their
bytes from the table; the rest contribute nothing. With ``len_t`` the byte length of token t,
``end_t = cumsum(len)_t`` and ``start_t = end_t - len_t``, stream position s belongs to the
token ``owner(s) = max{t : len_t > 0, start_t <= s}`` (a scatter-max of t at ``start_t`` and a
running max along s), and its byte is ``table[id[owner(s)], s - start_{owner(s)}]``.

Cost per call: O(N * (T + B)) time and a few int32 [N, B] / [N, T] buffers, where
B = ``max_bytes`` (the static stream capacity); the table stays on device as uint8 [V, M]
(about 19 MiB for Qwen2.5's V = 151936, M = 128).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from reczero_jax.text.token_bytes import TokenBytes

__all__ = ["ByteTable", "byte_stream"]

STREAM_PAD = -1  # stream value past the end of a row's bytes


@struct.dataclass
class ByteTable:
    """The token byte table as device arrays (a pytree).

    Attributes:
      bytes_flat: uint8 [V * M], row-major bytes of every id (padding bytes are 0, never read).
      lengths_v: int32 [V], byte length of every id (0 for unused / padding ids).
      max_token_bytes: M, static.
    """

    bytes_flat: jax.Array
    lengths_v: jax.Array
    max_token_bytes: int = struct.field(pytree_node=False)

    @classmethod
    def build(cls, table: TokenBytes) -> ByteTable:
        """Move a ``TokenBytes`` table to the device (uint8, flattened)."""
        if not isinstance(table, TokenBytes):
            raise TypeError(f"table must be a TokenBytes, got {type(table).__name__}")
        vocab, width = table.bytes_vm.shape
        if vocab * width >= 2**31:
            raise ValueError(f"byte table [{vocab}, {width}] is too large for int32 indexing")
        flat = np.where(table.bytes_vm >= 0, table.bytes_vm, 0).astype(np.uint8).reshape(-1)
        return cls(
            bytes_flat=jnp.asarray(flat),
            lengths_v=jnp.asarray(table.lengths_v, dtype=jnp.int32),
            max_token_bytes=int(width),
        )

    @property
    def vocab_size(self) -> int:
        return int(self.lengths_v.shape[0])


def byte_stream(
    table: ByteTable, tokens_nt: jax.Array, lengths_n: jax.Array, max_bytes: int
) -> tuple[jax.Array, jax.Array]:
    """Concatenate the bytes of each row's live tokens.

    Args:
      table: the device byte table.
      tokens_nt: int [N, T] token ids.
      lengths_n: int [N], number of live tokens per row (positions >= length are ignored).
      max_bytes: static capacity B of the stream.

    Returns:
      (stream_nb, total_n): int32 [N, B] bytes 0..255, -1 past the row's end (the first B bytes
      when the row is longer), and int32 [N], the row's full byte count (may exceed B).
    """
    num_rows, num_tokens = tokens_nt.shape
    ids = tokens_nt.astype(jnp.int32)
    t_idx = jnp.arange(num_tokens, dtype=jnp.int32)
    live = (t_idx[None, :] < lengths_n.astype(jnp.int32)[:, None]) & (ids >= 0)
    live &= ids < table.vocab_size
    safe = jnp.where(live, ids, 0)
    len_nt = jnp.where(live, table.lengths_v[safe], 0)
    end_nt = jnp.cumsum(len_nt, axis=1)
    start_nt = end_nt - len_nt
    total_n = end_nt[:, -1]

    # owner(s): scatter t at start_t (empty tokens and starts >= B dropped), then running max.
    scatter_at = jnp.where(len_nt > 0, start_nt, max_bytes)
    rows = jnp.broadcast_to(jnp.arange(num_rows)[:, None], (num_rows, num_tokens))
    owner_nb = jnp.full((num_rows, max_bytes), -1, dtype=jnp.int32)
    owner_nb = owner_nb.at[rows, scatter_at].max(
        jnp.broadcast_to(t_idx[None, :], (num_rows, num_tokens)), mode="drop"
    )
    owner_nb = jnp.maximum(jax.lax.cummax(owner_nb, axis=1), 0)

    pos_b = jnp.arange(max_bytes, dtype=jnp.int32)
    id_nb = jnp.take_along_axis(safe, owner_nb, axis=1)
    offset_nb = pos_b[None, :] - jnp.take_along_axis(start_nt, owner_nb, axis=1)
    flat_nb = id_nb * table.max_token_bytes + jnp.clip(offset_nb, 0, table.max_token_bytes - 1)
    bytes_nb = table.bytes_flat[flat_nb].astype(jnp.int32)
    stream_nb = jnp.where(pos_b[None, :] < total_n[:, None], bytes_nb, STREAM_PAD)
    return stream_nb, total_n
