"""Lowers a training config's step functions for real model shapes, without weights.

    python -m reczero_jax.tools.lower_config --config configs/reczero_qwen2_5_7b.py \
        [--shapes qwen2.5-7b] [--devices 8]

Builds abstract parameters, optimizer state and batches (``jax.ShapeDtypeStruct`` with
their shardings on the config's mesh) and lowers the GRPO update step and the group
sampler with ``jax.jit(...).lower``: a check that a pod configuration is consistent
(shapes, shardings, divisibility) before renting the pod. Prints one line per function.
With ``sampling.decode_loop='auto'`` the sampler is lowered with the loop a TPU runs
(scanned), not the one the CPU would pick.
On CPU, ``--devices N`` fakes N devices.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
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


# The real Qwen2.5-1.5B config.json beside the checkout (../shared), when present.
SHARED_QWEN_CONFIG = (
    pathlib.Path(__file__).resolve().parents[3] / "shared/tokenizers/qwen2.5/config.json"
)


def shape_config(name: str):
    """The ModelConfig of the real shapes ``name`` (a key of SHAPES): 'qwen2.5-1.5b' reads
    ``../shared``'s config.json when present; otherwise, and for the others, SHAPES."""
    from reczero_jax.model.model_config import ModelConfig

    if name == "qwen2.5-1.5b" and SHARED_QWEN_CONFIG.is_file():
        return ModelConfig.from_hf_dir(SHARED_QWEN_CONFIG.parent)
    return ModelConfig(**SHAPES[name])


def lower_config(settings, model_config) -> dict[str, object]:
    """{'train_step': Lowered, 'sampler': Lowered, 'objective': GRPOObjective} for
    ``settings`` on its mesh. The objective, optimizer, train step and sampler are built by
    the same functions training uses."""
    import jax
    import jax.numpy as jnp

    from reczero_jax import sharding
    from reczero_jax.engine import (
        build_mesh,
        check_attention_kernel,
        check_mesh_fits_model,
        sampler_spec,
    )
    from reczero_jax.model.params import DTYPES, sharded_param_shapes
    from reczero_jax.rl.grpo import grpo_objective
    from reczero_jax.rl.objectives import GRPOBatch
    from reczero_jax.rl.step import (
        abstract_train_state,
        batch_sharding,
        jit_train_step,
        make_optimizer,
    )
    from reczero_jax.sampling.sampler import GroupSampler, unroll_by_default

    mesh = build_mesh(settings)
    check_attention_kernel(settings, mesh)
    check_mesh_fits_model(mesh, model_config)
    pdt = DTYPES[settings.model.param_dtype]
    cfg = settings.grpo

    def abstract(rules):
        return sharded_param_shapes(model_config, mesh, rules, pdt)

    state = abstract_train_state(abstract(sharding.TRAIN_RULES), make_optimizer(cfg.optim))
    objective = grpo_objective(settings, model_config)
    b = cfg.prompts_per_step // cfg.mini_batches
    g, t = cfg.num_generations, settings.sampling.max_new_tokens
    p = settings.sampling.prompt_buckets[-1]
    rows = batch_sharding(mesh)

    def sds(shape, dtype):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=rows)

    kl = objective.loss.kl_coef > 0
    batch = GRPOBatch(
        prompt=sds((b, p), jnp.int32),
        prompt_valid=sds((b, p), bool),
        resp=sds((b, g, t), jnp.int32),
        resp_mask=sds((b, g, t), bool),
        old_logp=sds((b, g, t), jnp.float32),
        advantages=sds((b, g), jnp.float32),
        ref_logp=sds((b, g, t), jnp.float32) if kl else None,
    )
    step = jit_train_step(state, mesh, objective, cfg.micro_groups or b)
    out = {"train_step": step.lower(state, batch), "objective": objective}

    spec = sampler_spec(settings.sampling, model_config.eos_token_ids or (0,), 0, greedy=False)
    if spec.unroll_layers is None:  # 'auto': the loop a TPU pod runs, not the CPU's
        spec = dataclasses.replace(spec, unroll_layers=unroll_by_default("tpu"))
    sampler = GroupSampler(model_config, mesh, spec, None, DTYPES[settings.model.dtype])
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=sampler._replicated)
    out["sampler"] = sampler.lower(
        abstract(sharding.SAMPLE_RULES), sds((b, p), jnp.int32), sds((b, p), bool), key, g
    )
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
        if name == "objective":
            continue
        print(f"{name}: lowered ({len(low.as_text()) // 1024} KiB of StableHLO)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
