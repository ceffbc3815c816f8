"""Runs the device reward on lists of token id rows, padded to one fixed shape."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from reczero_jax.rewards import ByteTable, RewardSpec, compute_rewards, reason_names

# Every device call is padded to [ROWS, TOKENS] so that each (table, fmt, max_bytes) compiles once
# (about 2-3 s on CPU); the Qwen table is only used with four_step.
ROWS = 8
TOKENS = 128
QWEN_MODEL_VOCAB = 151936


class Scorer:
    """Runs ``compute_rewards`` on lists of id rows, padded to [ROWS, TOKENS]."""

    def __init__(self, tokenizer, table):
        self.tokenizer = tokenizer
        self.table = table
        self.device_table = ByteTable.build(table)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def score(self, rows, targets, spec=None, pad_ids=None) -> list[dict]:
        """Device results per row; ``pad_ids`` fills the positions after each row's length."""
        spec = RewardSpec() if spec is None else spec
        assert len(rows) <= ROWS and all(len(r) <= TOKENS for r in rows)
        tokens = np.zeros((ROWS, TOKENS), np.int32)
        if pad_ids is not None:
            tokens[:] = np.resize(np.asarray(pad_ids, np.int32), TOKENS)[None, :]
        lengths = np.zeros((ROWS,), np.int32)
        tgt = np.full((ROWS,), 3.0, np.float32)
        for n, (ids, t) in enumerate(zip(rows, targets)):
            tokens[n, : len(ids)] = ids
            lengths[n] = len(ids)
            tgt[n] = t
        out = compute_rewards(
            self.device_table, jnp.asarray(tokens), jnp.asarray(lengths), jnp.asarray(tgt), spec
        )
        names = reason_names(spec.fmt)
        res = []
        for n in range(len(rows)):
            res.append(
                {
                    "valid": bool(out.valid[n]),
                    "rating": float(out.rating[n]),
                    "reward": float(out.reward[n]),
                    "overflow": bool(out.overflow[n]),
                    "reason": names[int(out.reason[n])],
                }
            )
        return res
