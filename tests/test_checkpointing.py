"""Checkpointer: bitwise round trips (1 device, 8-device mesh, other meshes), policies, resume."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

from reczero_jax.checkpointing import (
    Checkpointer,
    StartFrom,
    checkpoint_steps,
    resolve_start,
    restore_checkpoint,
)

AXES = ("data", "fsdp", "tensor")
# Partition specs by parameter name; optimizer moments reuse their parameter's spec.
SPECS = {"kernel": P("fsdp", "tensor"), "bias": P("tensor"), "embed": P(None, "tensor")}


def _mesh(shape):
    return Mesh(np.array(jax.devices()).reshape(shape), AXES)


def _tx():
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))


def _state(rng_kind="typed"):
    """A tiny training state after one optimizer update (non-trivial Adam moments)."""
    k = jax.random.key(0)
    params = {
        "dense": {
            "kernel": jax.random.normal(k, (4, 8), jnp.float32),
            "bias": jnp.arange(8, dtype=jnp.float32) / 7,
        },
        "embed": jax.random.normal(jax.random.key(1), (6, 4), jnp.bfloat16),
    }
    tx = _tx()
    opt_state = tx.init(params)
    grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.3, params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    rng = jax.random.key(42) if rng_kind == "typed" else jax.random.key_data(jax.random.key(42))
    return {"params": params, "opt_state": opt_state, "step": jnp.int32(1), "rng": rng}


def _sharding_for(path, leaf, mesh):
    if mesh is None:
        return SingleDeviceSharding(jax.devices()[0])
    name = getattr(path[-1], "key", None)
    spec = SPECS.get(name, P()) if getattr(leaf, "ndim", 0) >= 1 else P()
    return NamedSharding(mesh, spec)


def _place(state, mesh):
    return jax.tree_util.tree_map_with_path(
        lambda p, x: jax.device_put(x, _sharding_for(p, x, mesh)), state
    )


def _abstract(state, mesh):
    return jax.tree_util.tree_map_with_path(
        lambda p, x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=_sharding_for(p, x, mesh)),
        state,
    )


def _assert_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert np.array_equal(np.asarray(x), np.asarray(y)), (x, y)


def _assert_shardings(state, abstract):
    for x, t in zip(jax.tree.leaves(state), jax.tree.leaves(abstract)):
        assert x.sharding.is_equivalent_to(t.sharding, x.ndim), (x.sharding, t.sharding)


@pytest.mark.parametrize("rng_kind", ["typed", "raw"])
def test_round_trip_one_device(tmp_path, rng_kind):
    state = _place(_state(rng_kind), None)
    meta = {"data_position": 17, "metrics": {"train/loss": 0.25}}
    with Checkpointer(tmp_path / "ckpt", save_every=1) as ckpt:
        assert ckpt.maybe_save(1, state, meta)
        assert ckpt.latest_step() == 1
        restored, got_meta = ckpt.restore(1, _abstract(state, None))
    _assert_bitwise_equal(state, restored)
    _assert_shardings(restored, _abstract(state, None))
    assert got_meta == {**meta, "step": 1}
    # The optax state keeps its namedtuple types.
    assert type(restored["opt_state"][1][0]) is type(state["opt_state"][1][0])


def test_round_trip_8_device_mesh_and_other_mesh_shapes(tmp_path):
    mesh = _mesh((2, 2, 2))
    state = _place(_state(), mesh)
    assert state["params"]["dense"]["kernel"].sharding.spec == P("fsdp", "tensor")
    with Checkpointer(tmp_path / "ckpt", save_every=1) as ckpt:
        ckpt.maybe_save(1, state, {}, force=True)
        for shape in [(2, 2, 2), (1, 4, 2), (8, 1, 1)]:
            target = _abstract(state, _mesh(shape))
            restored, _ = ckpt.restore(1, target)
            _assert_bitwise_equal(state, restored)
            _assert_shardings(restored, target)
        # Sharded on 8 devices, restored onto one device.
        restored, _ = ckpt.restore(None, _abstract(state, None))
        _assert_bitwise_equal(state, restored)


def test_restore_onto_concrete_arrays(tmp_path):
    mesh = _mesh((2, 2, 2))
    state = _place(_state(), mesh)
    zeros = jax.tree.map(
        lambda x: x if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else jnp.zeros_like(x),
        state,
    )
    with Checkpointer(tmp_path, save_every=1) as ckpt:
        ckpt.maybe_save(1, state, {})
        restored, _ = ckpt.restore(1, zeros)
    _assert_bitwise_equal(state, restored)
    _assert_shardings(restored, zeros)


def test_restore_errors(tmp_path):
    state = _state()
    with Checkpointer(tmp_path, save_every=1) as ckpt:
        with pytest.raises(FileNotFoundError, match="no checkpoint"):
            ckpt.restore(None, state)
        ckpt.maybe_save(2, state, {})
        with pytest.raises(FileNotFoundError, match=r"step 3 .*available: \[2\]"):
            ckpt.restore(3, state)
        no_sharding = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
        with pytest.raises(ValueError, match=r"restore target \[.*without a sharding"):
            ckpt.restore(2, no_sharding)


def test_save_every_force_and_repeated_step(tmp_path):
    state = {"x": jnp.arange(3.0)}
    with Checkpointer(tmp_path, save_every=2, max_to_keep=10) as ckpt:
        assert ckpt.latest_step() is None
        saved = [s for s in range(1, 6) if ckpt.maybe_save(s, state, {})]
        assert saved == [2, 4]
        assert checkpoint_steps(tmp_path) == [2, 4]  # on disk when maybe_save returns
        assert ckpt.maybe_save(5, state, {}, force=True)
        assert not ckpt.maybe_save(4, state, {})  # already saved (e.g. the step just restored)
        assert ckpt.all_steps() == [2, 4, 5]
    with pytest.raises(ValueError, match="save_every"):
        Checkpointer(tmp_path, save_every=0)


def test_async_save_survives_donation_and_completes_on_close(tmp_path):
    state = {"x": jnp.arange(1000.0), "rng": jax.random.key(7)}
    expected = jax.tree.map(lambda x: x.copy(), state)
    ckpt = Checkpointer(tmp_path, save_every=1, async_save=True)
    assert ckpt.maybe_save(1, state, {"k": 1})
    state["x"].delete()  # as if donated to the next train step
    ckpt.close()
    ckpt.close()
    restored, meta = restore_checkpoint(tmp_path, None, expected)
    _assert_bitwise_equal(expected, restored)
    assert meta == {"k": 1, "step": 1}


def test_max_to_keep(tmp_path):
    with Checkpointer(tmp_path, save_every=1, max_to_keep=2) as ckpt:
        for s in range(1, 5):
            ckpt.maybe_save(s, {"x": jnp.full(2, float(s))}, {})
        assert ckpt.all_steps() == [3, 4]
        restored, meta = ckpt.restore(4, {"x": jnp.zeros(2)})
    assert meta["step"] == 4 and np.array_equal(restored["x"], [4.0, 4.0])


def test_best_checkpoint_replaced_only_on_improvement(tmp_path):
    def st(v):
        return {"x": jnp.full(2, v)}

    target = st(0.0)
    with Checkpointer(tmp_path, save_every=100) as ckpt:
        assert ckpt.best_value is None
        assert ckpt.save_best(1, st(1.0), {"eval/mae": 1.0}, 1.0)
        assert not ckpt.save_best(2, st(2.0), {}, 1.5)  # worse: kept
        assert not ckpt.save_best(3, st(3.0), {}, float("nan"))
        assert ckpt.restore_best(target)[0]["x"][0] == 1.0
        assert ckpt.save_best(4, st(4.0), {}, np.float32(0.5))  # better: replaced
        assert sorted(p.name for p in ckpt.best_dir.iterdir()) == ["4"]
        assert ckpt.all_steps() == []  # best checkpoints are not periodic ones
    with Checkpointer(tmp_path, save_every=100) as resumed:  # the best value survives a restart
        assert (resumed.best_value, resumed.best_step) == (0.5, 4)
        assert not resumed.save_best(5, st(5.0), {}, 0.7)
        state, meta = resumed.restore_best(target)
        assert state["x"][0] == 4.0
        assert meta["best_metric"] == {"name": "eval/mae", "value": 0.5, "mode": "min"}
        assert resumed.save_best(3, st(3.0), {}, 0.25)  # an older step may still be better
        assert [p.name for p in resumed.best_dir.iterdir()] == ["3"]
    with pytest.raises(ValueError, match="best_metric"):
        Checkpointer(tmp_path, save_every=1, best_metric="eval/rmse")


def test_best_mode_max_and_disabled(tmp_path):
    with Checkpointer(tmp_path / "a", save_every=1, best_metric="eval/acc", best_mode="max") as c:
        assert c.save_best(1, {"x": jnp.zeros(1)}, {}, 0.5)
        assert c.is_improvement(0.6) and not c.is_improvement(0.4)
    off = Checkpointer(tmp_path / "b", save_every=1, best_metric=None)
    with off as c, pytest.raises(ValueError, match="best_metric"):
        c.save_best(1, {"x": jnp.zeros(1)}, {}, 0.5)


def test_meta_round_trip_with_nested_config(tmp_path):
    config = {
        "model": {"name": "qwen2.5-1.5b", "layers": 28, "dtype": "bfloat16", "tied": True},
        "grpo": {"group_size": 8, "clip": [0.2, 0.28], "kl_coef": 0.0, "schedule": None},
        "data": {"splits": ("train", "valid"), "seed": np.int64(3)},
    }
    meta = {"config": config, "data_position": 1234, "metrics": {"eval/mae": np.float32(0.75)}}
    with Checkpointer(tmp_path, save_every=1) as ckpt:
        ckpt.maybe_save(7, {"x": jnp.zeros(1)}, meta)
        _, got = ckpt.restore(7, {"x": jnp.zeros(1)})
    expected = {
        "config": {**config, "data": {"splits": ["train", "valid"], "seed": 3}},
        "data_position": 1234,
        "metrics": {"eval/mae": 0.75},
        "step": 7,
    }
    assert got == expected
    bad = Checkpointer(tmp_path / "bad", save_every=1)
    with bad as ckpt, pytest.raises(TypeError, match=r"meta\['config'\]\['f'\]"):
        ckpt.maybe_save(1, {"x": jnp.zeros(1)}, {"config": {"f": object()}})


def test_resolve_start_precedence(tmp_path):
    own, prev, hf = tmp_path / "run/ckpt", tmp_path / "prev/ckpt", tmp_path / "hf"
    hf.mkdir()
    state = {"x": jnp.zeros(1)}
    assert resolve_start(own, "", "") == StartFrom("scratch")
    assert resolve_start(own, None, hf) == StartFrom("hf", hf)
    with pytest.raises(FileNotFoundError, match="hf_dir=.*nope"):
        resolve_start(own, "", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=f"resume_from='{prev}'"):
        resolve_start(own, str(prev), hf)
    with Checkpointer(prev, save_every=1) as c:
        c.maybe_save(3, state, {})
        c.maybe_save(6, state, {})
    assert resolve_start(own, str(prev), hf) == StartFrom("resume_from", prev, 6)
    assert resolve_start(own, prev / "3", hf) == StartFrom("resume_from", prev, 3)
    _, meta = restore_checkpoint(prev, 3, state)
    assert meta["step"] == 3
    with Checkpointer(own, save_every=1) as c:
        c.save_best(1, state, {}, 0.1)  # a best checkpoint alone is not a resume point
    assert resolve_start(own, str(prev), hf).kind == "resume_from"
    with Checkpointer(own, save_every=1) as c:
        c.maybe_save(2, state, {})
    assert resolve_start(own, str(prev), hf) == StartFrom("workdir", own, 2)
    # An existing workdir checkpoint wins even over a bad resume_from.
    assert resolve_start(own, tmp_path / "missing", "").kind == "workdir"
