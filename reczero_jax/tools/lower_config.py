"""Lowers a training config's step functions for real model shapes, without weights.

    python -m reczero_jax.tools.lower_config --config configs/reczero_qwen2_5_7b.py \
        [--shapes qwen2.5-7b] [--devices 8]

Builds abstract parameters, optimizer state and batches (``jax.ShapeDtypeStruct`` with
their shardings on the config's mesh) and lowers the GRPO update step and the group
sampler with ``jax.jit(...).lower``: a check that a pod configuration is consistent
(shapes, shardings, divisibility) before renting the pod. Prints one line per function.
On CPU, ``--devices N`` fakes N devices.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

SHAPES = {
    "qwen2.5-7b": dict(
        model_type="qwen2",
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_layers=28,
        num_heads=28,
        num_kv_heads=4,
        head_dim=128,
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        qkv_bias=True,
        tie_word_embeddings=False,
    ),
    "qwen2.5-1.5b": dict(
        model_type="qwen2",
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_layers=28,
        num_heads=12,
        num_kv_heads=2,
        head_dim=128,
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        qkv_bias=True,
        tie_word_embeddings=True,
    ),
}


def lower_config(settings, model_config) -> dict[str, object]:
    """{'train_step': Lowered, 'sampler': Lowered} for ``settings`` on its mesh."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import NamedSharding, PartitionSpec

    from reczero_jax import sharding
    from reczero_jax.engine import DTYPES, build_mesh, check_mesh_fits_model
    from reczero_jax.model.params import abstract_params, param_shardings
    from reczero_jax.rl.update import (
        LossSettings,
        TrainBatch,
        TrainState,
        batch_shardings,
        jit_train_step,
        make_optimizer,
    )
    from reczero_jax.sampling.methods import Sampling
    from reczero_jax.sampling.sampler import GroupSamples, SamplerSpec, _generate

    mesh = build_mesh(settings)
    check_mesh_fits_model(mesh, model_config)
    pdt, cdt = DTYPES[settings.model.param_dtype], DTYPES[settings.model.dtype]
    cfg = settings.grpo
    optimizer = make_optimizer(cfg.optim.learning_rate, cfg.optim.weight_decay, cfg.optim.grad_clip)
    shapes, _ = abstract_params(model_config, pdt)
    train_sh = param_shardings(model_config, mesh, sharding.TRAIN_RULES, pdt)
    params = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, train_sh
    )
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_abstract = jax.eval_shape(optimizer.init, params)
    opt_sh = optax.tree_map_params(
        optimizer,
        lambda _, sh: sh,
        opt_abstract,
        train_sh,
        transform_non_params=lambda _: replicated,
    )
    opt_state = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), opt_abstract, opt_sh
    )
    state = TrainState(params, opt_state, jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated))
    b = cfg.prompts_per_step // cfg.mini_batches
    g, t = settings.sampling.num_samples, settings.sampling.max_new_tokens
    p = settings.sampling.prompt_buckets[-1]
    rows = batch_shardings(mesh).prompt

    def sds(shape, dtype):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=rows)

    batch = TrainBatch(
        sds((b, p), jnp.int32),
        sds((b, p), bool),
        sds((b, g, t), jnp.int32),
        sds((b, g, t), bool),
        sds((b, g, t), jnp.float32),
        sds((b, g, t), jnp.float32),
        sds((b, g), jnp.float32),
    )
    loss = LossSettings(
        kind="grpo",
        aggregation=cfg.aggregation,
        kl_coef=cfg.kl_coef,
        temperature=settings.sampling.temperature,
    )
    step = jit_train_step(
        state,
        mesh,
        config=model_config,
        optimizer=optimizer,
        settings=loss,
        micro_groups=cfg.micro_groups or b,
        dtype=cdt,
        remat=settings.model.remat,
    )
    out = {"train_step": step.lower(state, batch)}

    sample_sh = param_shardings(model_config, mesh, sharding.SAMPLE_RULES, pdt)
    sample_params = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, sample_sh
    )
    spec = SamplerSpec(
        max_new_tokens=t,
        method=Sampling(settings.sampling.temperature),
        eos_ids=model_config.eos_token_ids or (0,),
        pad_id=0,
        buckets=settings.sampling.prompt_buckets,
    )
    fn = functools.partial(_generate, config=model_config, spec=spec, num_samples=g, dtype=cdt)
    outs = GroupSamples(rows, rows, rows, rows)
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=replicated)
    with sharding.use_mesh(mesh, sharding.SAMPLE_RULES):
        out["sampler"] = jax.jit(
            fn, in_shardings=(sample_sh, rows, rows, replicated, None), out_shardings=outs
        ).lower(sample_params, sds((b, p), jnp.int32), sds((b, p), bool), key, None)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="configs/NAME.py[:arg]")
    parser.add_argument("--shapes", default="qwen2.5-7b", choices=sorted(SHAPES))
    parser.add_argument("--devices", type=int, default=0, help="fake CPU devices (0: real)")
    args = parser.parse_args(argv)
    if args.devices:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={args.devices}"
        )
    from reczero_jax.model.model_config import ModelConfig
    from reczero_jax.settings import load_config_file, load_settings

    try:
        settings = load_settings(load_config_file(args.config))
        lowered = lower_config(settings, ModelConfig(**SHAPES[args.shapes]))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, low in lowered.items():
        print(f"{name}: lowered ({len(low.as_text()) // 1024} KiB of StableHLO)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
