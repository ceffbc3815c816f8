"""Builds the pieces every mode needs: mesh, model config, weights, tokenizer, sampler.

Each builder validates its input against the others before anything is compiled
(head counts against the mesh, tokenizer vocabulary against the model...), raising
errors that name the config key to change.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from reczero_jax import sharding
from reczero_jax.config_parsing import ConfigError
from reczero_jax.hf.checkpoint import load_hf_params
from reczero_jax.model.model_config import ModelConfig
from reczero_jax.model.params import param_shardings
from reczero_jax.sampling.methods import Greedy, Sampling
from reczero_jax.sampling.sampler import GroupSampler, SamplerSpec
from reczero_jax.settings import ModelSettings, SamplingSettings, Settings
from reczero_jax.text.stop_strings import StopStrings
from reczero_jax.text.token_bytes import token_byte_table
from reczero_jax.text.tokenizer import eos_token_ids, load_tokenizer, pad_token_id

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass
class Engine:
    """A loaded model ready to sample: everything ``generate`` (and later GRPO) needs."""

    settings: Settings
    mesh: Mesh
    model_config: ModelConfig
    params: Any
    tokenizer: Any
    sampler: GroupSampler
    model_dir: pathlib.Path


def build_mesh(settings: Settings) -> Mesh:
    try:
        return sharding.make_mesh(settings.mesh.shape)
    except sharding.ShardingError as e:
        raise ConfigError(f"config.mesh.shape: {e}") from None


def check_mesh_fits_model(mesh: Mesh, config: ModelConfig) -> None:
    """Every tensor-parallel dimension must divide by mesh.tensor (named in the error)."""
    tp = mesh.shape["tensor"]
    for name, size in (
        ("num_attention_heads", config.num_heads),
        ("num_key_value_heads", config.num_kv_heads),
        ("intermediate_size", config.intermediate_size),
        ("vocab_size", config.vocab_size),
    ):
        if size % tp:
            raise ConfigError(
                f"config.mesh.shape: tensor={tp} does not divide the model's {name}={size}; "
                f"choose a tensor size that divides it"
            )


def resolve_model_dir(settings: Settings) -> pathlib.Path:
    """``model.hf_dir``, or a tiny random checkpoint built offline under the workdir."""
    if settings.model.hf_dir:
        return pathlib.Path(settings.model.hf_dir)
    from reczero_jax.tools.make_tiny_checkpoint import make_tiny_checkpoint

    root = pathlib.Path(settings.workdir or "/tmp/reczero_jax")
    path = root / "tiny_model"
    if not (path / "config.json").is_file():
        print(f"model.hf_dir is empty: building a tiny random checkpoint in {path}")
        make_tiny_checkpoint(path, seed=settings.seed)
    return path


def sampler_spec(
    sampling: SamplingSettings,
    eos_ids,
    pad_id: int,
    *,
    greedy: bool | None = None,
    max_new_tokens: int | None = None,
) -> SamplerSpec:
    """The sampler settings of ``sampling``; ``greedy`` / ``max_new_tokens`` override the
    config's method and budget (rollouts always sample, evaluation is always greedy)."""
    greedy = sampling.method == "greedy" if greedy is None else greedy
    method = Greedy() if greedy else Sampling(sampling.temperature, sampling.top_k, sampling.top_p)
    return SamplerSpec(
        max_new_tokens=sampling.max_new_tokens if max_new_tokens is None else max_new_tokens,
        method=method,
        eos_ids=tuple(eos_ids),
        pad_id=pad_id,
        buckets=sampling.prompt_buckets,
    )


def build_engine(settings: Settings) -> Engine:
    """Mesh, checkpoint (directly sharded for sampling), tokenizer and sampler."""
    model: ModelSettings = settings.model
    mesh = build_mesh(settings)
    model_dir = resolve_model_dir(settings)
    config = ModelConfig.from_hf_dir(model_dir)
    check_mesh_fits_model(mesh, config)
    tokenizer = load_tokenizer(model.tokenizer_dir or model_dir)
    if len(tokenizer) > config.vocab_size:
        raise ConfigError(
            f"config.model.tokenizer_dir: the tokenizer has {len(tokenizer)} tokens but the "
            f"model's vocab_size is {config.vocab_size}"
        )
    param_dtype = DTYPES[model.param_dtype]
    shardings = param_shardings(config, mesh, sharding.SAMPLE_RULES, param_dtype)
    params = load_hf_params(model_dir, config, shardings, dtype=param_dtype)
    eos = eos_token_ids(tokenizer, model_dir) or config.eos_token_ids
    stop = StopStrings.build(
        list(settings.sampling.stop_strings), token_byte_table(tokenizer, config.vocab_size)
    )
    sampler = GroupSampler(
        config,
        mesh,
        sampler_spec(settings.sampling, eos, pad_token_id(tokenizer)),
        stop=stop,
        dtype=DTYPES[model.dtype],
        seed=settings.seed,
    )
    return Engine(settings, mesh, config, params, tokenizer, sampler, model_dir)


def device_summary(mesh: Mesh) -> str:
    devices = mesh.devices.flat
    kind = next(iter(devices)).device_kind
    return f"{mesh.size} x {kind} ({jax.default_backend()}), mesh {dict(mesh.shape)}"
