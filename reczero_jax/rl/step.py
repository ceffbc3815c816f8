"""One jitted, sharded optimizer step for every objective: ``train_step(state, batch, loss_fn)``.

Gradient accumulation is exact: the mini-batch of B groups is split into micro-batches of
``micro_groups`` groups, a ``lax.scan`` sums the gradients of each micro-batch's loss
NUMERATOR (one micro-batch: no loop, no accumulator), and the sum is divided once by
``loss_fn.denominator`` of the whole mini-batch (:mod:`reczero_jax.rl.objectives`). A
non-finite loss or gradient skips the update (a ``lax.cond``: params and optimizer state
unchanged, ``step`` not advanced) and reports ``update/skipped = 1``. This is the only
train step: SFT and GRPO differ only in the ``loss_fn`` they pass.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reczero_jax import sharding
from reczero_jax.settings import OptimSettings


@struct.dataclass
class TrainState:
    params: Any
    opt_state: Any
    step: jax.Array  # int32 [], optimizer updates applied
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    def as_dict(self) -> dict:
        """The checkpointed part (the optimizer itself is rebuilt from the config)."""
        return {"params": self.params, "opt_state": self.opt_state, "step": self.step}


def _split_micro(batch, micro_groups: int):
    """[B, ...] -> [B / micro_groups, micro_groups, ...], interleaved so that every
    micro-batch takes groups from every batch shard (no data movement)."""
    b = batch.prompt.shape[0]
    n_micro = b // micro_groups

    def split(x):
        return jnp.swapaxes(x.reshape(micro_groups, n_micro, *x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def train_step(state: TrainState, batch, loss_fn, *, micro_groups: int):
    """One optimizer step on a mini-batch (pure; jit it with :func:`jit_train_step`).

    Returns (new state, metrics {name: float32 []}).
    """
    denominator = loss_fn.denominator(batch)
    micro = _split_micro(batch, micro_groups)

    def micro_loss(params, mb):
        numerator, sums = loss_fn(params, mb)
        return numerator / denominator, sums

    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

    def body(carry, mb):
        grads_acc, loss_acc, sums_acc = carry
        (loss, sums), grads = grad_fn(state.params, mb)
        grads_acc = jax.tree.map(lambda a, x: a + x.astype(jnp.float32), grads_acc, grads)
        return (grads_acc, loss_acc + loss, jax.tree.map(jnp.add, sums_acc, sums)), None

    if micro.prompt.shape[0] == 1:  # one micro-batch: no accumulator, no loop
        (loss, sums), grads = grad_fn(state.params, jax.tree.map(lambda x: x[0], micro))
        grads = jax.tree.map(lambda x: x.astype(jnp.float32), grads)
    else:
        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
        first = jax.tree.map(lambda x: x[0], micro)
        sums0 = jax.eval_shape(lambda: micro_loss(state.params, first)[1])
        sums0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sums0)
        (grads, loss, sums), _ = jax.lax.scan(body, (zeros, jnp.float32(0.0), sums0), micro)

    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def apply(params, opt_state):
        updates, new_opt_state = state.tx.update(grads, opt_state, params)
        # The float32 gradients would promote bfloat16 moments to float32: the state keeps
        # its dtypes, so the next step has the same input types (no second compilation)
        # and the donated buffers are reused.
        new_opt_state = jax.tree.map(lambda n, o: n.astype(o.dtype), new_opt_state, opt_state)
        return optax.apply_updates(params, updates), new_opt_state

    new_params, new_opt_state = jax.lax.cond(
        finite, apply, lambda p, o: (p, o), state.params, state.opt_state
    )
    new_state = state.replace(
        params=new_params,
        opt_state=new_opt_state,
        step=state.step + finite.astype(jnp.int32),
    )
    metrics = {
        "loss": loss,
        "grad_norm": grad_norm,
        "update/skipped": 1.0 - finite.astype(jnp.float32),
        "update/tokens": sums["tokens"],
        **loss_fn.metrics(sums),
    }
    return new_state, metrics


def jit_train_step(state: TrainState, mesh: Mesh, loss_fn, micro_groups: int):
    """``step(state, batch) -> (state, metrics)``: jitted with explicit shardings (the
    state's are kept, every batch field is split over the batch shards along its group
    axis), the state donated."""
    state_sh = jax.tree.map(lambda x: x.sharding, state)
    replicated = NamedSharding(mesh, PartitionSpec())

    def fn(state, batch):
        with sharding.use_mesh(mesh, sharding.TRAIN_RULES):
            return train_step(state, batch, loss_fn, micro_groups=micro_groups)

    return jax.jit(
        fn,
        in_shardings=(state_sh, batch_sharding(mesh)),
        out_shardings=(state_sh, replicated),
        donate_argnames=("state",),
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Every batch field is split over ('data', 'fsdp') along its first (group) axis."""
    return NamedSharding(mesh, PartitionSpec(sharding.BATCH_AXES))


def state_shardings(params, tx: optax.GradientTransformation) -> TrainState:
    """The TrainState's shardings: optimizer moments sharded like the params they track,
    counters replicated. ``params``: arrays or ShapeDtypeStructs with shardings."""
    param_sh = jax.tree.map(lambda x: x.sharding, params)
    mesh = jax.tree.leaves(param_sh)[0].mesh
    replicated = NamedSharding(mesh, PartitionSpec())
    abstract = jax.eval_shape(tx.init, params)
    opt_sh = optax.tree_map_params(
        tx, lambda _, sh: sh, abstract, param_sh, transform_non_params=lambda _: replicated
    )
    return TrainState(params=param_sh, opt_state=opt_sh, step=replicated, tx=tx)


def abstract_train_state(params, tx: optax.GradientTransformation) -> TrainState:
    """The TrainState of ``params`` as ShapeDtypeStructs with shardings (nothing allocated)."""
    shapes = TrainState(params, jax.eval_shape(tx.init, params), jnp.zeros((), jnp.int32), tx)
    return jax.tree.map(
        lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
        shapes,
        state_shardings(params, tx),
    )


def init_train_state(params, tx: optax.GradientTransformation) -> TrainState:
    """TrainState of ``params`` with fresh optimizer state, created directly on the devices
    in :func:`state_shardings`' layout."""
    sh = state_shardings(params, tx)
    opt_state = jax.jit(tx.init, out_shardings=sh.opt_state)(params)
    step = jax.device_put(jnp.zeros((), jnp.int32), sh.step)
    return TrainState(params=params, opt_state=opt_state, step=step, tx=tx)


def make_optimizer(optim: OptimSettings) -> optax.GradientTransformation:
    """AdamW with global-norm clipping from an ``optim`` config section; constant LR
    (optionally linear warmup, and cosine decay to 10% over ``decay_steps`` when > 0)."""
    lr, warmup, decay = optim.learning_rate, optim.warmup_steps, optim.decay_steps
    if decay > 0:
        schedule = optax.warmup_cosine_decay_schedule(
            0.0 if warmup else lr, lr, max(warmup, 1), max(decay, warmup + 1), lr * 0.1
        )
    elif warmup > 0:
        schedule = optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup]
        )
    else:
        schedule = lr
    chain = [optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay)]
    if optim.grad_clip > 0:
        chain.insert(0, optax.clip_by_global_norm(optim.grad_clip))
    return optax.chain(*chain)
