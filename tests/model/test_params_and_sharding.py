"""Parameter creation directly sharded, rule sets, and mesh errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from reczero_jax import sharding
from reczero_jax.model import ModelConfig, compute_logits
from reczero_jax.model.params import abstract_params, init_params, param_shardings

CONFIG = ModelConfig(
    model_type="llama",
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
)


def test_make_mesh_shapes_and_errors():
    mesh = sharding.make_mesh((2, -1, 2))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert sharding.batch_shards(mesh) == 4
    with pytest.raises(sharding.ShardingError, match="needs 12 devices"):
        sharding.make_mesh((2, 3, 2))
    with pytest.raises(sharding.ShardingError, match="at most one -1"):
        sharding.make_mesh((-1, -1, 2))
    with pytest.raises(sharding.ShardingError, match="3 sizes"):
        sharding.make_mesh((8,))


def test_make_mesh_follows_jax_make_mesh_with_auto_axes():
    """The device order is jax.make_mesh's (the interconnect's on TPU), every axis Auto
    (the logical rules decide shardings), and a smaller mesh takes the first devices."""
    from jax.sharding import AxisType

    mesh = sharding.make_mesh((1, -1, 2))
    reference = jax.make_mesh((1, 4, 2), sharding.MESH_AXES, (AxisType.Auto,) * 3)
    assert mesh.axis_names == sharding.MESH_AXES
    assert mesh.axis_types == (AxisType.Auto,) * 3
    assert [d.id for d in mesh.devices.flat] == [d.id for d in reference.devices.flat]
    small = sharding.make_mesh((1, 2, 1), jax.devices()[2:6])
    assert [d.id for d in small.devices.flat] == [d.id for d in jax.devices()[2:4]]


def test_rule_sets_train_fsdp_and_sample_tensor_only():
    mesh = sharding.make_mesh((2, 2, 2))
    train = param_shardings(CONFIG, mesh, sharding.TRAIN_RULES)
    sample = param_shardings(CONFIG, mesh, sharding.SAMPLE_RULES)
    q_train = train["layers"]["attn"]["q_proj"]["kernel"].spec
    q_sample = sample["layers"]["attn"]["q_proj"]["kernel"].spec
    assert q_train == P(None, "fsdp", "tensor", None)
    assert q_sample == P(None, None, "tensor", None)
    assert train["embed"]["embedding"].spec == P("tensor", "fsdp")
    assert train["lm_head"]["kernel"].spec == P("fsdp", "tensor")
    assert sample["layers"]["mlp"]["down_proj"]["kernel"].spec == P(None, "tensor", None)


def test_params_are_created_sharded_and_match_unsharded():
    mesh8 = sharding.make_mesh((2, 2, 2))
    mesh1 = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
    p8 = init_params(CONFIG, mesh8, sharding.TRAIN_RULES, jax.random.key(1))
    p1 = init_params(CONFIG, mesh1, sharding.TRAIN_RULES, jax.random.key(1))
    kernel = p8["layers"]["mlp"]["gate_proj"]["kernel"]
    assert kernel.sharding.spec == P(None, "fsdp", "tensor")
    assert len(kernel.addressable_shards) == 8
    assert kernel.addressable_shards[0].data.shape == (2, 32, 64)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), p8, p1)
    tokens = np.arange(32, dtype=np.int32).reshape(4, 8) % 256
    np.testing.assert_allclose(
        np.asarray(compute_logits(CONFIG, p8, tokens)),
        np.asarray(compute_logits(CONFIG, p1, tokens)),
        atol=1e-5,
    )


def test_indivisible_dimension_names_the_parameter():
    mesh = sharding.make_mesh((1, 1, 8))
    with pytest.raises(sharding.ShardingError, match="kv_heads|k_proj"):
        param_shardings(CONFIG, mesh, sharding.SAMPLE_RULES)


def test_abstract_params_build_nothing():
    shapes, logical = abstract_params(CONFIG)
    assert shapes["layers"]["attn"]["q_proj"]["kernel"].shape == (2, 64, 4, 16)
    assert logical["layers"]["attn"]["q_proj"]["kernel"] == P(
        "layers", "embed", "heads", "head_dim"
    )
    total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
    assert total == CONFIG.num_params()
