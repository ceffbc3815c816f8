"""Parameter trees without materialising them: shapes, logical axes, shardings, init.

Everything goes through ``jax.eval_shape`` first, so parameters are created (or loaded,
see :mod:`reczero_jax.hf.checkpoint`) directly in their sharded layout, never on one
device first.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from reczero_jax import sharding
from reczero_jax.model.decoder import Decoder
from reczero_jax.model.model_config import ModelConfig

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}  # config name -> dtype


def _init_fn(config: ModelConfig, param_dtype):
    model = Decoder(config, param_dtype=param_dtype)
    tokens = jnp.zeros((1, 1), jnp.int32)
    shared = {"key_valid": jnp.ones((1, 1), bool)}
    return lambda key: model.init(key, tokens, tokens, shared)


def abstract_params(config: ModelConfig, param_dtype: Any = jnp.float32):
    """(shapes, logical_specs): ShapeDtypeStruct tree and PartitionSpec-of-logical-names tree
    of the ``params`` collection."""
    boxed = jax.eval_shape(_init_fn(config, param_dtype), jax.random.key(0))
    logical = nn.get_partition_spec(boxed)["params"]
    return nn.unbox(boxed)["params"], logical


def param_shardings(
    config: ModelConfig, mesh: Mesh, rules: sharding.Rules, param_dtype: Any = jnp.float32
):
    """NamedSharding tree of the params under ``rules`` (raises ShardingError when a
    dimension does not divide its mesh axes)."""
    shapes, logical = abstract_params(config, param_dtype)
    return sharding.tree_shardings(shapes, logical, mesh, rules)


def sharded_param_shapes(
    config: ModelConfig, mesh: Mesh, rules: sharding.Rules, param_dtype: Any = jnp.float32
):
    """The params as ShapeDtypeStructs carrying their NamedShardings under ``rules``: what
    ``jit(...).lower`` needs to compile for real shapes without making any weight."""
    shapes, logical = abstract_params(config, param_dtype)
    shardings = sharding.tree_shardings(shapes, logical, mesh, rules)
    return jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )


def init_params(
    config: ModelConfig,
    mesh: Mesh,
    rules: sharding.Rules,
    key: jax.Array,
    param_dtype: Any = jnp.float32,
):
    """Random parameters (normal(0.02) weights, unit norms, zero biases), created sharded."""
    shardings = param_shardings(config, mesh, rules, param_dtype)
    init = _init_fn(config, param_dtype)
    with sharding.use_mesh(mesh, rules):
        return jax.jit(lambda k: nn.unbox(init(k))["params"], out_shardings=shardings)(key)
