"""One jitted, sharded optimizer step for GRPO and for supervised fine-tuning.

A mini-batch holds B groups: one prompt [P] and its G responses [G, T] each (SFT: G = 1).
The forward pass processes each prompt once (``Decoder(mode='grouped')``), computes the
response tokens' log-probs in chunks (:mod:`reczero_jax.rl.logprobs`) and a per-token loss:

* ``kind='grpo'``: clipped surrogate against the behaviour log-probs, plus
  ``kl_coef * KL(current || reference)`` (the reference log-probs are inputs; the
  reference forward is skipped entirely when kl_coef == 0) minus
  ``entropy_coef * entropy``;
* ``kind='sft'``: -logp (cross-entropy on response tokens only).

Gradient accumulation is exact: the mini-batch is split into micro-batches of
``micro_groups`` groups, a ``lax.scan`` sums the gradients of each micro-batch's loss
NUMERATOR, and the sum is divided once by the denominator of the whole mini-batch
(:mod:`reczero_jax.rl.losses`). A non-finite loss or gradient skips the update (params and
optimizer state unchanged) and reports ``update/skipped = 1``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reczero_jax import sharding
from reczero_jax.model.decoder import Decoder, lm_head_kernel, pack_groups, response_hidden
from reczero_jax.model.model_config import ModelConfig
from reczero_jax.rl import losses
from reczero_jax.rl.logprobs import token_logprobs


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """Static loss options (hashable; part of the compiled step).

    Attributes:
      kind: 'grpo' or 'sft'.
      aggregation: 'token-mean', 'seq-mean-token-mean' or 'dr_grpo'.
      eps_low / eps_high: PPO clip range [1 - eps_low, 1 + eps_high].
      dual_clip_c: dual-clip constant for negative advantages (<= 1: off).
      kl_coef / kl_estimator: weight and estimator ('k3', 'k2') of the KL term.
      entropy_coef: weight of the entropy bonus (subtracted from the loss).
      temperature: the sampler's temperature; log-probs are of softmax(logits / T).
      logprob_chunk: response positions per chunk of the log-prob computation.
    """

    kind: str = "grpo"
    aggregation: str = "token-mean"
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip_c: float = 3.0
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    temperature: float = 1.0
    logprob_chunk: int = 64

    def __post_init__(self):
        if self.kind not in ("grpo", "sft"):
            raise ValueError(f"kind must be 'grpo' or 'sft', got {self.kind!r}")
        if self.aggregation not in losses.AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {losses.AGGREGATIONS}")
        if self.kl_estimator not in losses.KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {losses.KL_ESTIMATORS}")


@struct.dataclass
class TrainBatch:
    """B groups. Shapes: prompt [B, P], responses [B, G, T], advantages [B, G]."""

    prompt: jax.Array  # int32 [B, P], left-padded
    prompt_valid: jax.Array  # bool [B, P]
    resp: jax.Array  # int32 [B, G, T], right-padded
    resp_mask: jax.Array  # bool [B, G, T], True on real response tokens
    old_logp: jax.Array  # float32 [B, G, T] behaviour log-probs (zeros for SFT)
    ref_logp: jax.Array  # float32 [B, G, T] reference log-probs (zeros when kl_coef == 0)
    advantages: jax.Array  # float32 [B, G] (zeros for SFT)


@struct.dataclass
class TrainState:
    params: Any
    opt_state: Any
    step: jax.Array  # int32 [], optimizer steps taken


def response_logprobs(
    config: ModelConfig,
    params,
    batch: TrainBatch,
    temperature: float,
    chunk: int,
    dtype: Any = jnp.float32,
    remat: str = "none",
) -> tuple[jax.Array, jax.Array]:
    """(logp, entropy) float32 [B, G, T] of the batch's response tokens under ``params``."""
    b, g, t = batch.resp.shape
    p = batch.prompt.shape[1]
    tokens, positions, shared = pack_groups(
        batch.prompt, batch.prompt_valid, batch.resp, batch.resp_mask
    )
    model = Decoder(config, dtype=dtype, remat=remat, mode="grouped", output="hidden")
    hidden, _ = model.apply({"params": params}, tokens, positions, shared)
    h = response_hidden(hidden, p, g, t)  # [B, G, T, D]
    return token_logprobs(h, lm_head_kernel(params, config), batch.resp, temperature, chunk, dtype)


def _micro_loss(params, micro: TrainBatch, denominator, config, settings, dtype, remat):
    """(numerator / denominator, aux sums) of one micro-batch."""
    logp, entropy = response_logprobs(
        config, params, micro, settings.temperature, settings.logprob_chunk, dtype, remat
    )
    b, g, t = micro.resp.shape
    mask = micro.resp_mask.reshape(b * g, t)
    m = mask.astype(jnp.float32)
    logp2, ent2 = logp.reshape(b * g, t), entropy.reshape(b * g, t)
    aux = {"tokens": jnp.sum(m), "entropy": jnp.sum(ent2 * m)}
    if settings.kind == "sft":
        per_token = -logp2
        aux["nll"] = jnp.sum(-logp2 * m)
    else:
        old = micro.old_logp.reshape(b * g, t)
        adv = jnp.repeat(micro.advantages.reshape(b * g), t).reshape(b * g, t)
        per_token, clipped = losses.clipped_surrogate(
            logp2, old, adv, settings.eps_low, settings.eps_high, settings.dual_clip_c
        )
        aux["clipped"] = jnp.sum(clipped.astype(jnp.float32) * m)
        aux["logprob_gap"] = jnp.sum(jnp.abs(logp2 - old) * m)
        aux["ratio"] = jnp.sum(jnp.exp(jnp.clip(logp2 - old, -20.0, 20.0)) * m)
        if settings.kl_coef > 0:
            kl = losses.kl_penalty(logp2, micro.ref_logp.reshape(b * g, t), settings.kl_estimator)
            per_token = per_token + settings.kl_coef * kl
            aux["kl"] = jnp.sum(kl * m)
        if settings.entropy_coef > 0:
            per_token = per_token - settings.entropy_coef * ent2
    numerator = losses.aggregate_numerator(per_token, mask, settings.aggregation)
    return numerator / denominator, aux


def _split_micro(batch: TrainBatch, micro_groups: int) -> TrainBatch:
    """[B, ...] -> [B / micro_groups, micro_groups, ...], interleaved so that every
    micro-batch takes groups from every batch shard (no data movement)."""
    b = batch.prompt.shape[0]
    n_micro = b // micro_groups

    def split(x):
        x = x.reshape(micro_groups, n_micro, *x.shape[1:])
        return jnp.swapaxes(x, 0, 1)

    return jax.tree.map(split, batch)


def train_step(
    state: TrainState,
    batch: TrainBatch,
    *,
    config: ModelConfig,
    optimizer: optax.GradientTransformation,
    settings: LossSettings,
    micro_groups: int,
    dtype: Any = jnp.float32,
    remat: str = "none",
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on a mini-batch (pure; jit it with :func:`jit_train_step`)."""
    b, g, t = batch.resp.shape
    denominator = losses.aggregate_denominator(
        batch.resp_mask.reshape(b * g, t), settings.aggregation
    )
    micro = _split_micro(batch, micro_groups)
    grad_fn = jax.value_and_grad(_micro_loss, has_aux=True)

    def body(carry, mb):
        grads_acc, loss_acc, aux_acc = carry
        (loss, aux), grads = grad_fn(state.params, mb, denominator, config, settings, dtype, remat)
        grads_acc = jax.tree.map(lambda a, x: a + x.astype(jnp.float32), grads_acc, grads)
        aux_acc = jax.tree.map(jnp.add, aux_acc, aux)
        return (grads_acc, loss_acc + loss, aux_acc), None

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
    aux0 = jax.eval_shape(
        lambda: _micro_loss(
            state.params,
            jax.tree.map(lambda x: x[0], micro),
            denominator,
            config,
            settings,
            dtype,
            remat,
        )[1]
    )
    aux0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), aux0)
    (grads, loss, aux), _ = jax.lax.scan(body, (zeros, jnp.float32(0.0), aux0), micro)

    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    safe_grads = jax.tree.map(lambda x: jnp.where(finite, x, 0.0), grads)
    updates, new_opt_state = optimizer.update(safe_grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jax.tree.map(lambda a, c: jnp.where(finite, a, c), new, old)  # noqa: E731
    new_state = TrainState(
        params=keep(new_params, state.params),
        opt_state=keep(new_opt_state, state.opt_state),
        step=state.step + finite.astype(jnp.int32),
    )
    tokens = jnp.maximum(aux["tokens"], 1.0)
    metrics = {
        "loss": loss,
        "grad_norm": grad_norm,
        "update/skipped": 1.0 - finite.astype(jnp.float32),
        "policy/entropy": aux["entropy"] / tokens,
        "update/tokens": aux["tokens"],
    }
    if settings.kind == "sft":
        metrics["sft/nll"] = aux["nll"] / tokens
    else:
        metrics["policy/clip_frac"] = aux["clipped"] / tokens
        metrics["policy/logprob_gap"] = aux["logprob_gap"] / tokens
        metrics["policy/ratio_mean"] = aux["ratio"] / tokens
        if "kl" in aux:
            metrics["policy/kl"] = aux["kl"] / tokens
    return new_state, metrics


def batch_shardings(mesh: Mesh) -> TrainBatch:
    """Every TrainBatch field split over ('data', 'fsdp') along its group axis."""
    rows = NamedSharding(mesh, PartitionSpec(sharding.BATCH_AXES))
    return TrainBatch(*([rows] * len(dataclasses.fields(TrainBatch))))


def init_train_state(params, optimizer: optax.GradientTransformation) -> TrainState:
    """TrainState whose optimizer moments are sharded like the params they track
    (counters replicated), created directly on the devices."""
    param_sh = jax.tree.map(lambda x: x.sharding, params)
    mesh = jax.tree.leaves(param_sh)[0].mesh
    replicated = NamedSharding(mesh, PartitionSpec())
    abstract = jax.eval_shape(optimizer.init, params)
    opt_sh = optax.tree_map_params(
        optimizer, lambda _, sh: sh, abstract, param_sh, transform_non_params=lambda _: replicated
    )
    opt_state = jax.jit(optimizer.init, out_shardings=opt_sh)(params)
    step = jax.device_put(jnp.zeros((), jnp.int32), replicated)
    return TrainState(params=params, opt_state=opt_state, step=step)


def jit_train_step(
    state: TrainState,
    mesh: Mesh,
    *,
    config: ModelConfig,
    optimizer: optax.GradientTransformation,
    settings: LossSettings,
    micro_groups: int,
    dtype: Any = jnp.float32,
    remat: str = "none",
):
    """``step(state, batch) -> (state, metrics)``: jitted with explicit shardings, the
    state donated. Shardings of ``state`` (params under TRAIN_RULES) are kept."""
    state_sh = jax.tree.map(lambda x: x.sharding, state)
    replicated = NamedSharding(mesh, PartitionSpec())

    def fn(state, batch):
        with sharding.use_mesh(mesh, sharding.TRAIN_RULES):
            return train_step(
                state,
                batch,
                config=config,
                optimizer=optimizer,
                settings=settings,
                micro_groups=micro_groups,
                dtype=dtype,
                remat=remat,
            )

    return jax.jit(
        fn,
        in_shardings=(state_sh, batch_shardings(mesh)),
        out_shardings=(state_sh, replicated),
        donate_argnums=(0,),
    )


def make_optimizer(
    learning_rate: float,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    warmup_steps: int = 0,
    decay_steps: int = 0,
    b1: float = 0.9,
    b2: float = 0.999,
) -> optax.GradientTransformation:
    """AdamW with global-norm clipping; constant LR (optionally linear warmup, and cosine
    decay to 10% over ``decay_steps`` when > 0)."""
    if decay_steps > 0:
        schedule = optax.warmup_cosine_decay_schedule(
            0.0 if warmup_steps else learning_rate,
            learning_rate,
            max(warmup_steps, 1),
            max(decay_steps, warmup_steps + 1),
            learning_rate * 0.1,
        )
    elif warmup_steps > 0:
        schedule = optax.join_schedules(
            [
                optax.linear_schedule(0.0, learning_rate, warmup_steps),
                optax.constant_schedule(learning_rate),
            ],
            [warmup_steps],
        )
    else:
        schedule = learning_rate
    chain = [optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay)]
    if grad_clip > 0:
        chain.insert(0, optax.clip_by_global_norm(grad_clip))
    return optax.chain(*chain)
