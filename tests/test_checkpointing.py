"""Checkpointer: bitwise round trips (1 device, 8-device mesh, other meshes), keeping the
latest N and the best K by a metric in one Orbax manager, async saves, resume."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

from reczero_jax.checkpointing import (
    Checkpointer,
    checkpoint_steps,
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
        assert ckpt.save(1, state, meta)
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
        ckpt.save(1, state, {}, force=True)
        for shape in [(2, 2, 2), (1, 4, 2), (8, 1, 1)]:
            target = _abstract(state, _mesh(shape))
            restored, _ = ckpt.restore(1, target)
            _assert_bitwise_equal(state, restored)
            _assert_shardings(restored, target)
        # Sharded on 8 devices, restored onto one device.
        restored, _ = ckpt.restore(None, _abstract(state, None))
        _assert_bitwise_equal(state, restored)


def test_partial_restore_reads_the_params_alone_into_another_layout(tmp_path):
    """A new phase starts from another checkpoint's weights: only 'params' is requested,
    restored onto another mesh's shardings; the directory is left as it was."""
    state = _place(_state(), _mesh((2, 2, 2)))
    with Checkpointer(tmp_path / "ckpt", save_every=1) as ckpt:
        ckpt.save(3, state, {"phase": "sft"}, force=True)
    before = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    target = {"params": _abstract(state, _mesh((1, 4, 2)))["params"]}
    restored, meta = restore_checkpoint(tmp_path / "ckpt", None, target, partial=True)
    assert set(restored) == {"params"} and meta["phase"] == "sft"
    _assert_bitwise_equal(state["params"], restored["params"])
    _assert_shardings(restored, target)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == before


def test_restore_onto_concrete_arrays(tmp_path):
    mesh = _mesh((2, 2, 2))
    state = _place(_state(), mesh)
    zeros = jax.tree.map(
        lambda x: x if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else jnp.zeros_like(x),
        state,
    )
    with Checkpointer(tmp_path, save_every=1) as ckpt:
        ckpt.save(1, state, {})
        restored, _ = ckpt.restore(1, zeros)
    _assert_bitwise_equal(state, restored)
    _assert_shardings(restored, zeros)


def test_restore_errors(tmp_path):
    state = _state()
    with Checkpointer(tmp_path, save_every=1) as ckpt:
        with pytest.raises(FileNotFoundError, match="no checkpoint"):
            ckpt.restore(None, state)
        ckpt.save(2, state, {})
        with pytest.raises(FileNotFoundError, match=r"step 3 .*available: \[2\]"):
            ckpt.restore(3, state)
        no_sharding = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
        with pytest.raises(ValueError, match=r"restore target \[.*without a sharding"):
            ckpt.restore(2, no_sharding)
    with pytest.raises(ValueError, match="closed"):
        ckpt.save(3, state, {})


def test_save_every_metrics_force_and_repeated_step(tmp_path):
    state = {"x": jnp.arange(3.0)}
    with Checkpointer(tmp_path, save_every=2, keep_latest=10, async_save=False) as ckpt:
        assert ckpt.latest_step() is None
        saved = [s for s in range(1, 6) if ckpt.save(s, state, {})]
        assert saved == [2, 4]
        assert checkpoint_steps(tmp_path) == [2, 4]  # synchronous: on disk when save returns
        assert ckpt.save(5, state, {}, metrics={"eval/mae": 1.0})  # an evaluation step
        assert ckpt.save(7, state, {}, force=True)
        # Already saved (e.g. the step just restored): skipped, with or without metrics.
        assert not ckpt.save(4, state, {})
        assert not ckpt.save(4, state, {}, metrics={"eval/mae": 0.5})
        assert not ckpt.save(7, state, {}, force=True)
        assert ckpt.all_steps() == [2, 4, 5, 7]
        assert ckpt.latest_step() == 7
        assert ckpt.best_step() is None  # best_metric not set
    for bad in [
        {"save_every": 0},
        {"save_every": 1, "keep_latest": 0},
        {"save_every": 1, "keep_best": 0},
        {"save_every": 1.5},
    ]:
        with pytest.raises(ValueError, match=r"must be an int >= 1"):
            Checkpointer(tmp_path, **bad)
    with pytest.raises(ValueError, match="best_mode"):
        Checkpointer(tmp_path, save_every=1, best_mode="median")


def test_async_save_survives_donation_and_forced_save_is_on_disk(tmp_path):
    state = {"x": jnp.arange(1000.0), "rng": jax.random.key(7)}
    expected = jax.tree.map(lambda x: x.copy(), state)
    ckpt = Checkpointer(tmp_path, save_every=1)  # async_save=True is the default
    assert ckpt.save(1, state, {"k": 1})
    state["x"].delete()  # as if donated to the next train step
    # A forced save (the last step) returns only once its checkpoint is complete on disk.
    big = {"x": jnp.arange(4_000_000, dtype=jnp.float32), "rng": jax.random.key(8)}
    assert ckpt.save(2, big, {"k": 2}, force=True)
    assert checkpoint_steps(tmp_path) == [1, 2]
    assert not [p.name for p in tmp_path.iterdir() if "tmp" in p.name]
    assert ckpt.save(3, {"x": jnp.zeros(1000), "rng": jax.random.key(9)}, {"k": 3})
    ckpt.close()  # waits for the pending save of step 3
    ckpt.close()
    assert checkpoint_steps(tmp_path) == [2, 3]  # keep_latest=2
    with pytest.raises(FileNotFoundError, match="step 1"):
        restore_checkpoint(tmp_path, 1, expected)
    restored, meta = restore_checkpoint(tmp_path, 2, big)
    _assert_bitwise_equal(big, restored)
    assert meta == {"k": 2, "step": 2}


def test_async_save_then_donation_restores_the_saved_values(tmp_path):
    state = {"x": jnp.arange(1000.0), "rng": jax.random.key(7)}
    expected = jax.tree.map(lambda x: x.copy(), state)
    with Checkpointer(tmp_path, save_every=1, async_save=True) as ckpt:
        assert ckpt.save(1, state, {"k": 1})
        state["x"].delete()  # as if donated to the next train step
    restored, meta = restore_checkpoint(tmp_path, None, expected)
    _assert_bitwise_equal(expected, restored)
    assert meta == {"k": 1, "step": 1}


def test_keep_latest(tmp_path):
    with Checkpointer(tmp_path, save_every=1, keep_latest=2) as ckpt:
        for s in range(1, 5):
            ckpt.save(s, {"x": jnp.full(2, float(s))}, {})
        assert ckpt.all_steps() == [3, 4]
        restored, meta = ckpt.restore(4, {"x": jnp.zeros(2)})
    assert checkpoint_steps(tmp_path) == [3, 4]
    assert meta["step"] == 4 and np.array_equal(restored["x"], [4.0, 4.0])


def _st(v):
    return {"x": jnp.full(2, float(v))}


def test_best_kept_although_older_than_the_latest(tmp_path):
    target = _st(0)
    kw = {"save_every": 2, "keep_latest": 1, "best_metric": "eval/mae"}
    with Checkpointer(tmp_path, **kw) as ckpt:
        assert ckpt.best_step() is None
        assert ckpt.save(2, _st(2), {}, metrics={"eval/mae": 0.3, "eval/acc": 0.1})
        assert ckpt.save(4, _st(4), {}, metrics={"eval/mae": np.float32(0.5)})
        assert ckpt.save(6, _st(6), {}, metrics={"eval/mae": 0.4})
        assert ckpt.all_steps() == [2, 6]
        assert checkpoint_steps(tmp_path) == [2, 6]
        assert ckpt.best_step() == 2
        state, meta = ckpt.restore(ckpt.best_step(), target)
        assert state["x"][0] == 2.0 and meta["step"] == 2
        assert ckpt.latest_step() == 6
        # A better one replaces the old best; the latest is that same step.
        assert ckpt.save(8, _st(8), {}, metrics={"eval/mae": 0.1})
        assert ckpt.all_steps() == [8]
        assert ckpt.best_step() == 8


def test_keep_best_several_and_mode_max(tmp_path):
    kw = {"save_every": 1, "keep_latest": 1, "best_metric": "eval/acc", "best_mode": "max"}
    with Checkpointer(tmp_path, keep_best=2, **kw) as ckpt:
        for step, acc in [(1, 0.5), (2, 0.9), (3, 0.7), (4, 0.6), (5, 0.2)]:
            ckpt.save(step, _st(step), {}, metrics={"eval/acc": acc})
        assert ckpt.all_steps() == [2, 3, 5]  # the best two by max, and the latest
        assert ckpt.best_step() == 2
    with Checkpointer(tmp_path / "min", **{**kw, "best_mode": "min"}) as ckpt:
        for step, acc in [(1, 0.5), (2, 0.9), (3, 0.7)]:
            ckpt.save(step, _st(step), {}, metrics={"eval/acc": acc})
        assert ckpt.all_steps() == [1, 3] and ckpt.best_step() == 1


def test_equal_metrics_best_is_the_newest_the_one_kept(tmp_path):
    with Checkpointer(tmp_path, save_every=1, keep_latest=2, best_metric="m") as ckpt:
        ckpt.save(1, _st(1), {}, metrics={"m": 0.3})
        ckpt.save(2, _st(2), {}, metrics={"m": 0.3})
        assert ckpt.best_step() == 2
        ckpt.save(3, _st(3), {})
        ckpt.save(4, _st(4), {})
        assert ckpt.all_steps() == [2, 3, 4]  # BestN keeps the newer of equal values
        assert ckpt.best_step() == 2


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "missing"])
def test_non_finite_or_missing_metric_is_never_best(tmp_path, bad):
    metrics = {"other": 1.0} if bad == "missing" else {"eval/mae": np.float32(bad)}
    with Checkpointer(tmp_path, save_every=1, keep_latest=1, best_metric="eval/mae") as ckpt:
        assert ckpt.save(1, _st(1), {}, metrics=metrics)
        assert ckpt.best_step() is None
        ckpt.save(2, _st(2), {})
        assert ckpt.all_steps() == [2]  # not kept as a best either
        ckpt.save(3, _st(3), {}, metrics={"eval/mae": 0.5})
        ckpt.save(4, _st(4), {}, metrics=metrics)
        ckpt.save(5, _st(5), {})
        assert ckpt.all_steps() == [3, 5]
        assert ckpt.best_step() == 3


def test_saves_without_metrics_are_never_best(tmp_path):
    with Checkpointer(tmp_path, save_every=1, keep_latest=2, best_metric="eval/mae") as ckpt:
        for s in range(1, 5):
            ckpt.save(s, _st(s), {})
        assert ckpt.all_steps() == [3, 4]  # BestN does not keep them: LatestN decides
        assert ckpt.best_step() is None
        ckpt.save(5, _st(5), {}, metrics={"eval/mae": 2.0})
        for s in range(6, 9):
            ckpt.save(s, _st(s), {})
        assert ckpt.all_steps() == [5, 7, 8]
        assert ckpt.best_step() == 5


def test_best_record_survives_reopening(tmp_path):
    kw = {"save_every": 2, "keep_latest": 1, "best_metric": "eval/mae"}
    with Checkpointer(tmp_path, **kw) as ckpt:
        ckpt.save(2, _st(2), {}, metrics={"eval/mae": 0.3})
        ckpt.save(4, _st(4), {}, metrics={"eval/mae": 0.5})
    with Checkpointer(tmp_path, **kw) as ckpt:
        assert ckpt.all_steps() == [2, 4]
        assert ckpt.best_step() == 2
        # Orbax's BestN knows the reloaded metrics: step 2 outlives newer, worse steps.
        ckpt.save(6, _st(6), {})
        ckpt.save(8, _st(8), {}, metrics={"eval/mae": 0.6})
        assert ckpt.all_steps() == [2, 8]
        assert ckpt.best_step() == 2
    with Checkpointer(tmp_path, **{**kw, "best_mode": "max"}) as ckpt:
        assert ckpt.best_step() == 8  # the records are values, read with this run's mode
    with Checkpointer(tmp_path, **{**kw, "best_metric": None}) as ckpt:
        assert ckpt.best_step() is None
        ckpt.save(10, _st(10), {}, metrics={"eval/mae": 0.1})  # recorded, not ranked
        assert ckpt.all_steps() == [10]
    with Checkpointer(tmp_path, **kw) as ckpt:
        assert ckpt.best_step() == 10
        ckpt.save(12, _st(12), {})
        assert ckpt.all_steps() == [10, 12]


def test_meta_round_trip_with_nested_config(tmp_path):
    config = {
        "model": {"name": "qwen2.5-1.5b", "layers": 28, "dtype": "bfloat16", "tied": True},
        "grpo": {"group_size": 8, "clip": [0.2, 0.28], "kl_coef": 0.0, "schedule": None},
        "data": {"splits": ("train", "valid"), "seed": np.int64(3)},
    }
    meta = {"config": config, "data_position": 1234, "metrics": {"eval/mae": np.float32(0.75)}}
    with Checkpointer(tmp_path, save_every=1) as ckpt:
        ckpt.save(7, {"x": jnp.zeros(1)}, meta)
        _, got = ckpt.restore(7, {"x": jnp.zeros(1)})
    expected = {
        "config": {**config, "data": {"splits": ["train", "valid"], "seed": 3}},
        "data_position": 1234,
        "metrics": {"eval/mae": 0.75},
        "step": 7,
    }
    assert got == expected
    bad = Checkpointer(tmp_path / "bad", save_every=1)
    with bad as ckpt:
        with pytest.raises(TypeError, match=r"meta\['config'\]\['f'\]"):
            ckpt.save(1, {"x": jnp.zeros(1)}, {"config": {"f": object()}})
        with pytest.raises(TypeError, match=r"metrics\['m'\]"):
            ckpt.save(2, {"x": jnp.zeros(1)}, {}, metrics={"m": object()})
        assert ckpt.all_steps() == []
