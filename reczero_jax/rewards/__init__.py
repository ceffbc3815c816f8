"""Rule-based RecZero rewards: a plain-Python reference and a batched jnp implementation.

Typical use::

    table = ByteTable.build(token_byte_table(tokenizer, vocab_size))
    spec = RewardSpec("four_step", "paper")
    out = compute_rewards(table, tokens_bgt, lengths_bg, targets_bg, spec)
    out.reward  # float32 [B, G]: any leading shape of the token ids [..., T]

The grammar and the preset formulas are documented in ``reczero_jax.rewards.grammar``.
"""

from reczero_jax.rewards.device import (
    RewardOut,
    RewardSpec,
    compute_rewards,
    parse_tokens,
    reason_names,
)
from reczero_jax.rewards.grammar import FORMATS, PRESETS, format_tags, reasons
from reczero_jax.rewards.reference import Parsed, parse, reward, round_half_up
from reczero_jax.rewards.stream import ByteTable, byte_stream

__all__ = [
    "FORMATS",
    "PRESETS",
    "ByteTable",
    "Parsed",
    "RewardOut",
    "RewardSpec",
    "byte_stream",
    "compute_rewards",
    "format_tags",
    "parse",
    "parse_tokens",
    "reason_names",
    "reasons",
    "reward",
    "round_half_up",
]
