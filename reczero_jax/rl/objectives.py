"""What one optimizer step minimises: the batches, the model forward, the two objectives.

A batch holds B groups: one prompt [P] and its G responses [G, T] each (SFT: G = 1).
:class:`Forward` processes each prompt once (``Decoder(mode='grouped')``) and returns the
response tokens' log-probs and entropies in chunks (:mod:`reczero_jax.rl.logprobs`).
An objective turns them into the numerator of the loss aggregation
(:mod:`reczero_jax.rl.losses`); its ``denominator`` is computed once from the whole
mini-batch, so that micro-batch accumulation is exact (:mod:`reczero_jax.rl.step`).

Objective protocol (both are frozen dataclasses: hashable, part of the compiled step)::

    denominator(batch) -> float32 []
    __call__(params, micro_batch) -> (numerator float32 [], sums {name: float32 []})
    metrics(sums) -> {name: float32 []}    # sums over the whole mini-batch
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from reczero_jax.model.decoder import Decoder, lm_head_kernel, pack_groups, response_hidden
from reczero_jax.model.model_config import ModelConfig
from reczero_jax.model.params import DTYPES
from reczero_jax.rl import losses
from reczero_jax.rl.logprobs import token_logprobs
from reczero_jax.settings import ModelSettings


@struct.dataclass
class SFTBatch:
    """B (prompt, response) pairs as groups of one. Shapes: prompt [B, P], resp [B, 1, T]."""

    prompt: jax.Array  # int32 [B, P], left-padded
    prompt_valid: jax.Array  # bool [B, P]
    resp: jax.Array  # int32 [B, 1, T], right-padded
    resp_mask: jax.Array  # bool [B, 1, T], True on the trained response tokens


@struct.dataclass
class GRPOBatch:
    """B groups of G sampled answers. Shapes: prompt [B, P], responses [B, G, T]."""

    prompt: jax.Array  # int32 [B, P], left-padded
    prompt_valid: jax.Array  # bool [B, P]
    resp: jax.Array  # int32 [B, G, T], right-padded
    resp_mask: jax.Array  # bool [B, G, T], True on real response tokens
    old_logp: jax.Array  # float32 [B, G, T] behaviour log-probs (the sampler's)
    advantages: jax.Array  # float32 [B, G]
    ref_logp: jax.Array | None = None  # float32 [B, G, T]; only with a KL term


@dataclasses.dataclass(frozen=True)
class Forward:
    """(logp, entropy) float32 [B, G, T] of a batch's response tokens under ``params``:
    each prompt processed once for its G responses; log-probs of softmax(logits / T)."""

    config: ModelConfig
    dtype: Any = jnp.float32
    remat: str = "none"
    temperature: float = 1.0
    chunk: int = 64  # response positions per chunk of the vocabulary projection
    scan_layers: bool = True
    logits_remat: bool = True  # recompute each chunk's logits in the backward pass
    attention: str = "einsum"  # the decoder's attention kernel (model.attention.KERNELS)

    def __call__(self, params, batch) -> tuple[jax.Array, jax.Array]:
        b, g, t = batch.resp.shape
        p = batch.prompt.shape[1]
        tokens, positions, shared = pack_groups(
            batch.prompt, batch.prompt_valid, batch.resp, batch.resp_mask
        )
        model = Decoder(
            self.config,
            dtype=self.dtype,
            remat=self.remat,
            mode="grouped",
            output="hidden",
            scan_layers=self.scan_layers,
            attention=self.attention,
        )
        hidden, _ = model.apply({"params": params}, tokens, positions, shared)
        h = response_hidden(hidden, p, g, t)  # [B, G, T, D]
        kernel = lm_head_kernel(params, self.config)
        return token_logprobs(
            h, kernel, batch.resp, self.temperature, self.chunk, self.dtype, self.logits_remat
        )


def training_forward(model: ModelSettings, config: ModelConfig, temperature: float) -> Forward:
    """The training forward of the ``model`` section (compute dtype, remat, layer loop,
    log-prob chunks, attention kernel)."""
    return Forward(
        config,
        DTYPES[model.dtype],
        model.remat,
        temperature,
        scan_layers=model.scan_layers,
        logits_remat=model.logits_remat,
        attention=model.attention,
    )


def _rows(mask_bgt: jax.Array) -> jax.Array:
    return mask_bgt.reshape(-1, mask_bgt.shape[-1])  # [B*G, T] for the aggregation


@dataclasses.dataclass(frozen=True)
class SFTObjective:
    """Cross-entropy on the response tokens (RecOne's cold start)."""

    forward: Forward
    aggregation: str = "token-mean"

    def denominator(self, batch: SFTBatch) -> jax.Array:
        return losses.aggregate_denominator(_rows(batch.resp_mask), self.aggregation)

    def __call__(self, params, micro: SFTBatch):
        logp, entropy = self.forward(params, micro)
        return losses.sft_loss(logp, entropy, micro.resp_mask, self.aggregation)

    def metrics(self, sums: dict) -> dict:
        tokens = jnp.maximum(sums["tokens"], 1.0)
        return {"sft/nll": sums["nll"] / tokens, "policy/entropy": sums["entropy"] / tokens}


@dataclasses.dataclass(frozen=True)
class GRPOObjective:
    """The GRPO loss (:func:`reczero_jax.rl.losses.grpo_loss`) on sampled groups."""

    forward: Forward
    loss: losses.GRPOLoss

    def denominator(self, batch: GRPOBatch) -> jax.Array:
        return losses.aggregate_denominator(_rows(batch.resp_mask), self.loss.aggregation)

    def __call__(self, params, micro: GRPOBatch):
        logp, entropy = self.forward(params, micro)
        return losses.grpo_loss(
            logp, entropy, micro.old_logp, micro.advantages, micro.resp_mask, micro.ref_logp,
            self.loss,
        )  # fmt: skip

    def metrics(self, sums: dict) -> dict:
        tokens = jnp.maximum(sums["tokens"], 1.0)
        out = {
            "policy/entropy": sums["entropy"] / tokens,
            "policy/clip_frac": sums["clipped"] / tokens,
            "policy/logprob_gap": sums["logprob_gap"] / tokens,
            "policy/ratio_mean": sums["ratio"] / tokens,
        }
        if "kl" in sums:
            out["policy/kl"] = sums["kl"] / tokens
        return out
