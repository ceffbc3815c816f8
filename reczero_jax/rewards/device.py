"""The answer grammar and rewards in jnp: batched, jit-compatible, tokenizer-independent.

``compute_rewards(table, tokens, lengths, targets, spec)`` scores token rows of any leading
batch shape: tokens [..., T] with lengths and targets [...] (e.g. [N, T] with [N], or a
sampler's [B, G, T] with [B, G]) give every ``RewardOut`` field with shape [...]. Inside,
the rows are flattened to N = prod(...) and the token ids mapped to bytes on device
(``stream.byte_stream``); the rules of ``grammar`` then run on the byte stream [N, B] with
whole-array operations only (no per-sample Python):

- tag occurrences: ``hit[n, k, s] = AND_i stream[n, s + i] == tag_k[i]`` (static shifts), then
  ``count_k = sum_s hit_k``, ``pos_k = min{s : hit_k[s]}`` (the first occurrence);
- ``order``: ``pos_k + len_k <= pos_{k+1}``;
- non-empty sections: section j = [pos_open_j + len_open_j, pos_close_j) is non-empty iff
  ``any_s (a_j <= s < b_j) & stream[s] not in b" \t\n\r"`` (one masked reduction);
- the rating section [a, b): byte classes (digit / '.' / whitespace / other) give the regex
  test; with f / l the first / last non-whitespace byte and d the dot (if any), the integer
  part is [f, d) and the fraction (d, l]. The range test is exact on the digits: all integer
  digits but the last are '0' and the last, v, is 1..4, or 5 with an all-zero fraction.
  The value is ``v + F / 1e9`` in float32, with F the int32 of the first 9 fraction digits
  (error below 1e-6 against the exact decimal). For ``exact``:
  ``rhu(p) = v + [first fraction digit >= 5]`` (exact) and
  ``rhu(t) = floor(t) + [t - floor(t) >= 0.5]`` (exact for the float32 target).

Cost: O(N * (T + B * (K * L + c))) elementwise work (K tags of at most L bytes; K * L is 120
for four_step), a few int32 [N, B] buffers and bool [N, K, B]; no [N, T, M] array.
B = ``spec.max_bytes`` or 8 * T by default. Rows whose bytes exceed B are ``overflow`` and
invalid.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from reczero_jax.rewards.grammar import (
    check_preset,
    format_pairs,
    format_tags,
    preset_constants,
    reasons,
)
from reczero_jax.rewards.stream import ByteTable, byte_stream

__all__ = ["RewardOut", "RewardSpec", "compute_rewards", "parse_tokens", "reason_names"]

_BEYOND = -2  # padding past the stream capacity: never equals a byte or the end marker
_FRAC_DIGITS = 9  # fraction digits that enter the float32 value (10**9 < 2**31)


@dataclasses.dataclass(frozen=True)
class RewardSpec:
    """Static reward settings (hashable; pass as a static argument).

    Attributes:
      fmt: 'four_step' (default), 'rating_only' or 'single_think'.
      preset: 'paper' (default), 'reference_code' or 'exact'.
      max_bytes: byte-stream capacity B per row; None means 8 * T.
    """

    fmt: str = "four_step"
    preset: str = "paper"
    max_bytes: int | None = None

    def __post_init__(self):
        format_pairs(self.fmt)
        check_preset(self.preset)
        if self.max_bytes is not None and (
            not isinstance(self.max_bytes, int) or isinstance(self.max_bytes, bool)
        ):
            raise TypeError(f"max_bytes must be an int or None, got {self.max_bytes!r}")
        if self.max_bytes is not None and self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")

    def capacity(self, num_tokens: int) -> int:
        """The stream capacity B for token rows of length ``num_tokens``."""
        return self.max_bytes if self.max_bytes is not None else max(1, 8 * num_tokens)


@struct.dataclass
class RewardOut:
    """Per-response results, all with the batch shape [...] of the tokens [..., T].

    Attributes:
      valid: bool, the response follows the format.
      rating: float32, the parsed rating (0 where invalid).
      reward: float32, the preset's reward.
      overflow: bool, the response's bytes exceeded the stream capacity (then invalid).
      reason: int32, index into ``reason_names(fmt)`` of the first failed rule (0: 'ok').
    """

    valid: jax.Array
    rating: jax.Array
    reward: jax.Array
    overflow: jax.Array
    reason: jax.Array


def reason_names(fmt: str) -> tuple[str, ...]:
    """Names of the ``RewardOut.reason`` codes for ``fmt`` (same strings as the reference)."""
    return reasons(fmt)


def _find_tags(stream_nb: jax.Array, tags: tuple[bytes, ...]):
    """Counts and first positions of every tag, each int32 [N, K] (position B when absent).

    ``hit[n, k, s] = AND_{i < len_k} stream[n, s + i] == tag_k[i]``, built with one [N, K, B]
    compare per byte offset i < max_k len_k.
    """
    width = stream_nb.shape[1]
    longest = max(len(t) for t in tags)
    patterns = np.full((len(tags), longest), _BEYOND, dtype=np.int32)
    for k, tag in enumerate(tags):
        patterns[k, : len(tag)] = np.frombuffer(tag, dtype=np.uint8)
    padded = jnp.pad(stream_nb, ((0, 0), (0, longest)), constant_values=_BEYOND)
    hit_nkb = jnp.ones((stream_nb.shape[0], len(tags), width), dtype=bool)
    for i in range(longest):
        used_k = np.array([i < len(t) for t in tags])
        eq = padded[:, None, i : i + width] == jnp.asarray(patterns[:, i])[None, :, None]
        hit_nkb &= eq | jnp.asarray(~used_k)[None, :, None]
    pos_b = jnp.arange(width, dtype=jnp.int32)
    counts_nk = jnp.sum(hit_nkb, axis=2, dtype=jnp.int32)
    firsts_nk = jnp.min(jnp.where(hit_nkb, pos_b, width), axis=2)
    return counts_nk, firsts_nk


def _parse_rating(stream_nb: jax.Array, a_n: jax.Array, b_n: jax.Array):
    """Rules 5-6 on the section [a, b). Returns (bad, out_of_range, value f32, rhu int32)."""
    width = stream_nb.shape[1]
    pos = jnp.arange(width, dtype=jnp.int32)[None, :]
    x = stream_nb
    inside = (pos >= a_n[:, None]) & (pos < b_n[:, None])
    is_ws = (x == 32) | (x == 9) | (x == 10) | (x == 13)
    is_digit = (x >= 48) & (x <= 57)
    is_dot = x == 46
    solid = inside & ~is_ws
    has_any = jnp.any(solid, axis=1)
    first = jnp.min(jnp.where(solid, pos, width), axis=1)
    last = jnp.max(jnp.where(solid, pos, -1), axis=1)
    n_other = jnp.sum(solid & ~is_digit & ~is_dot, axis=1)
    n_dot = jnp.sum(inside & is_dot, axis=1)
    between = (pos > first[:, None]) & (pos < last[:, None])
    inner_ws = jnp.any(inside & is_ws & between, axis=1)
    has_dot = n_dot == 1
    dot = jnp.where(has_dot, jnp.min(jnp.where(inside & is_dot, pos, width), axis=1), last + 1)
    bad = ~has_any | (n_other > 0) | (n_dot > 1) | inner_ws
    bad |= has_dot & ((dot == first) | (dot == last))

    nonzero = inside & is_digit & (x != 48)
    lead_nonzero = jnp.any(nonzero & (pos >= first[:, None]) & (pos < dot[:, None] - 1), axis=1)
    frac_nonzero = jnp.any(nonzero & (pos > dot[:, None]) & (pos <= last[:, None]), axis=1)
    # digits at dot - 1 (units) and dot + 1 .. dot + 9 (fraction), one gather.
    offsets = jnp.arange(-1, _FRAC_DIGITS + 1, dtype=jnp.int32)
    at = dot[:, None] + offsets[None, :]
    digits = jnp.take_along_axis(x, jnp.clip(at, 0, width - 1), axis=1) - 48
    units = digits[:, 0]
    frac_ok = has_dot[:, None] & (at[:, 2:] <= last[:, None])
    frac_digits = jnp.where(frac_ok, digits[:, 2:], 0)
    in_range = ~lead_nonzero & (((units >= 1) & (units <= 4)) | ((units == 5) & ~frac_nonzero))
    weights = jnp.asarray([10 ** (_FRAC_DIGITS - 1 - k) for k in range(_FRAC_DIGITS)], jnp.int32)
    frac_int = jnp.sum(frac_digits * weights[None, :], axis=1)
    value = units.astype(jnp.float32) + frac_int.astype(jnp.float32) / jnp.float32(1e9)
    rounded = units + (frac_digits[:, 0] >= 5).astype(jnp.int32)
    return bad, ~in_range, value, rounded


@functools.partial(jax.jit, static_argnames=("fmt", "max_bytes"))
def parse_tokens(
    table: ByteTable, tokens_nt: jax.Array, lengths_n: jax.Array, fmt: str, max_bytes: int
):
    """Grammar rules on token rows (jitted per (shape, fmt, max_bytes)).

    Returns (valid bool [N], rating float32 [N] (0 where invalid), rounded rating int32 [N],
    overflow bool [N], reason int32 [N]).
    """
    pairs = format_pairs(fmt)
    tags = format_tags(fmt)
    stream_nb, total_n = byte_stream(table, tokens_nt, lengths_n, max_bytes)
    overflow = total_n > max_bytes
    counts_nk, firsts_nk = _find_tags(stream_nb, tags)
    lengths_k = jnp.asarray([len(t) for t in tags], jnp.int32)

    fails = [overflow[:, None]]
    fails.append(jnp.stack([counts_nk == 0, counts_nk > 1], axis=2).reshape(len(overflow), -1))
    ends_nk = firsts_nk + lengths_k[None, :]
    order_ok = jnp.all(ends_nk[:, :-1] <= firsts_nk[:, 1:], axis=1)
    fails.append(~order_ok[:, None])

    x = stream_nb
    if len(pairs) > 1:  # sections [end of open_j, start of close_j), j < last: non-whitespace
        pos = jnp.arange(x.shape[1], dtype=jnp.int32)[None, None, :]
        solid = ((x != 32) & (x != 9) & (x != 10) & (x != 13))[:, None, :]
        a_ns = ends_nk[:, 0:-2:2, None]
        b_ns = firsts_nk[:, 1:-2:2, None]
        fails.append(~jnp.any(solid & (pos >= a_ns) & (pos < b_ns), axis=2))
    bad, out_of_range, value, rounded = _parse_rating(x, ends_nk[:, -2], firsts_nk[:, -1])
    fails.append(jnp.stack([bad, out_of_range], axis=1))

    fail_nr = jnp.concatenate(fails, axis=1)
    assert fail_nr.shape[1] == len(reasons(fmt)) - 1
    valid = ~jnp.any(fail_nr, axis=1)
    reason = jnp.where(valid, 0, jnp.argmax(fail_nr, axis=1).astype(jnp.int32) + 1)
    rating = jnp.where(valid, value, 0.0).astype(jnp.float32)
    return valid, rating, rounded, overflow, reason


def _round_half_up(t_n: jax.Array) -> jax.Array:
    """floor(t + 1/2), exact for float32 t: floor(t) + [t - floor(t) >= 0.5]."""
    floor = jnp.floor(t_n)
    return floor + (t_n - floor >= 0.5).astype(t_n.dtype)


@functools.partial(jax.jit, static_argnames=("preset",))
def _apply_preset(valid, rating, rounded, targets_n, preset: str) -> jax.Array:
    offset, scale, invalid = preset_constants(preset)
    t = targets_n.astype(jnp.float32)
    if preset == "exact":
        hit = rounded.astype(jnp.float32) == _round_half_up(t)
        good = offset + hit.astype(jnp.float32)
    else:
        good = offset + (1.0 - jnp.abs(rating - t) / scale)
    return jnp.where(valid, good, invalid).astype(jnp.float32)


def compute_rewards(
    table: ByteTable,
    tokens: jax.Array,
    lengths: jax.Array,
    targets: jax.Array,
    spec: RewardSpec = RewardSpec(),
) -> RewardOut:
    """Rewards of responses given as token ids, over any leading batch shape [...].

    Shape rule: ``tokens`` is [..., T] with at least one batch dimension (ndim >= 2: [N, T],
    [B, G, T], ...); ``lengths`` and ``targets`` have exactly the batch shape
    ``tokens.shape[:-1]``; every ``RewardOut`` field has that batch shape too. The caller
    never flattens or reshapes: ``GroupSampler.sample``'s tokens [B, G, T] and lengths
    [B, G] go in as they are, with targets [B, G].

    Args:
      table: ``ByteTable.build(token_byte_table(tokenizer, vocab_size))``.
      tokens: int32 [..., T], response token ids; ids outside [0, V) contribute no bytes.
      lengths: int32 [...], live tokens per response; tokens at positions >= length are
        ignored.
      targets: float32 [...], target ratings.
      spec: ``RewardSpec`` (static). Its byte capacity is per response (from T).

    Returns:
      ``RewardOut`` with valid bool [...], rating float32 [...], reward float32 [...],
      overflow bool [...], reason int32 [...]. Callable inside jit (spec must then be static
      / closed over); the result does not depend on the batch shape, only on each response.
    """
    if not isinstance(spec, RewardSpec):
        raise TypeError(f"spec must be a RewardSpec, got {type(spec).__name__}")
    tokens, lengths, targets = jnp.asarray(tokens), jnp.asarray(lengths), jnp.asarray(targets)
    if tokens.ndim < 2:
        raise ValueError(
            "tokens must be [..., T] with at least one batch dimension ([N, T], [B, G, T]...), "
            f"got shape {tokens.shape}"
        )
    batch_shape, num_tokens = tokens.shape[:-1], tokens.shape[-1]
    if lengths.shape != batch_shape or targets.shape != batch_shape:
        raise ValueError(
            f"lengths and targets must have the batch shape tokens.shape[:-1] = {batch_shape}, "
            f"got shape {lengths.shape} and {targets.shape}"
        )
    num_rows = math.prod(batch_shape)
    max_bytes = spec.capacity(num_tokens)
    valid, rating, rounded, overflow, reason = parse_tokens(
        table,
        tokens.reshape(num_rows, num_tokens),
        lengths.reshape(num_rows),
        spec.fmt,
        max_bytes,
    )
    reward = _apply_preset(valid, rating, rounded, targets.reshape(num_rows), spec.preset)
    out = RewardOut(valid=valid, rating=rating, reward=reward, overflow=overflow, reason=reason)
    return jax.tree.map(lambda x: x.reshape(batch_shape), out)
