"""The one place that knows the mesh axis names and maps logical axis names onto them.

The device mesh always has the three axes ``('data', 'fsdp', 'tensor')`` (any of them may
have size 1). Parameters and the main activations carry *logical* axis names ('embed',
'heads', 'act_batch'...); a rule set maps each logical name to mesh axes:

* ``TRAIN_RULES``: FSDP + tensor parallelism. Weights are split over 'fsdp' along the
  embedding dimension and over 'tensor' along heads / MLP / vocabulary; the batch is split
  over 'data' and 'fsdp'.
* ``SAMPLE_RULES``: tensor parallelism only. Weights are split over 'tensor' and
  replicated over 'data' and 'fsdp'; the batch (rows and KV cache) is split over
  'data' and 'fsdp'.

Activation constraints inside the model go through :func:`constrain`, which is a no-op
unless a mesh has been activated with :func:`use_mesh` while tracing.

Topology. :func:`make_mesh` orders the devices with ``jax.make_mesh``, which follows the
TPU interconnect (ICI) so that neighbouring mesh coordinates are neighbouring chips. On a
multi-slice TPU job (devices with several ``slice_index`` values, joined by the slower
data-centre network, DCN) the ``data`` axis spans the slices
(``mesh_utils.create_hybrid_device_mesh``): data parallelism only all-reduces gradients
once per step, which DCN bears, while ``fsdp`` (weight all-gathers every layer) and
``tensor`` (activation collectives every layer) stay inside a slice, on ICI. Every axis is
``AxisType.Auto``: shardings come from the logical rules and ``jit``'s in/out shardings,
not from explicit-sharding types.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Iterator, Sequence

import jax
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

_COMMON: Rules = (
    ("layers", None),
    ("head_dim", None),
    ("norm", None),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    # activations
    ("act_batch", BATCH_AXES),
    ("act_length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("cache_length", None),
)
TRAIN_RULES: Rules = (("embed", "fsdp"),) + _COMMON
SAMPLE_RULES: Rules = (("embed", None),) + _COMMON


class ShardingError(ValueError):
    """A mesh or a sharding that cannot work (bad shape, indivisible dimension)."""


def resolve_mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, int, int]:
    """The (data, fsdp, tensor) sizes of ``shape`` on ``num_devices`` devices, with the one
    allowed -1 replaced by "all remaining devices". Raises ShardingError on a bad shape."""
    shape = [int(s) for s in shape]
    if len(shape) != 3:
        raise ShardingError(f"mesh.shape needs 3 sizes (data, fsdp, tensor), got {shape}")
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ShardingError(f"mesh.shape {shape}: sizes must be positive, at most one -1")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if num_devices % known:
            raise ShardingError(
                f"mesh.shape {shape}: {num_devices} devices are not divisible by {known}"
            )
        shape[shape.index(-1)] = num_devices // known
    if math.prod(shape) > num_devices:
        raise ShardingError(
            f"mesh.shape {shape} needs {math.prod(shape)} devices but {num_devices} are present"
        )
    return tuple(shape)


def make_mesh(shape: Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a ('data', 'fsdp', 'tensor') mesh in the interconnect's device order.

    Args:
      shape: three sizes; one of them may be -1, meaning "all remaining devices". A mesh
        with fewer devices than present uses the first ones.
      devices: the devices to use (default: all devices, in `jax.devices()` order).
    Several TPU slices: ``data`` must be a multiple of the slice count and spans them.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = resolve_mesh_shape(shape, len(devices))
    devices = devices[: math.prod(shape)]  # a smaller mesh uses the first devices
    types = (AxisType.Auto,) * len(MESH_AXES)
    slices = sorted({getattr(d, "slice_index", 0) for d in devices})
    if len(slices) > 1:
        if shape[0] % len(slices):
            raise ShardingError(
                f"mesh.shape {shape}: data={shape[0]} must be a multiple of the {len(slices)} "
                "TPU slices (the data axis spans the slices over DCN)"
            )
        ici = (shape[0] // len(slices), shape[1], shape[2])
        dcn = (len(slices), 1, 1)
        array = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices)
        return Mesh(array, MESH_AXES, axis_types=types)
    return jax.make_mesh(shape, MESH_AXES, types, devices=devices)


def batch_shards(mesh: Mesh) -> int:
    """How many ways the batch dimension is split (data x fsdp)."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def logical_to_spec(logical_axes: Sequence[str | None], rules: Rules) -> PartitionSpec:
    """Maps logical axis names to a PartitionSpec (unknown names raise, None stays None)."""
    table = dict(rules)
    out = []
    used: set[str] = set()
    for name in logical_axes:
        if name is None:
            out.append(None)
            continue
        if name not in table:
            raise ShardingError(f"logical axis {name!r} has no sharding rule")
        mesh_axes = table[name]
        # A mesh axis may appear once per spec; later uses fall back to replication.
        flat = (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes or ())
        flat = tuple(a for a in flat if a not in used)
        used.update(flat)
        out.append(flat[0] if len(flat) == 1 else (flat or None))
    return PartitionSpec(*out)


def _check_divisible(name: str, shape: Sequence[int], spec: PartitionSpec, mesh: Mesh) -> None:
    for dim, axes in zip(shape, spec):
        if axes is None:
            continue
        axes_t = (axes,) if isinstance(axes, str) else tuple(axes)
        ways = math.prod(mesh.shape[a] for a in axes_t)
        if dim % ways:
            raise ShardingError(
                f"{name}: dimension of size {dim} cannot be split {ways} ways over mesh axes "
                f"{axes_t} (mesh {dict(mesh.shape)}); choose a mesh.shape that divides it"
            )


def tree_shardings(abstract_tree, logical_tree, mesh: Mesh, rules: Rules):
    """NamedShardings for every leaf of ``abstract_tree`` from its logical axis names.

    Args:
      abstract_tree: pytree of arrays or ShapeDtypeStructs.
      logical_tree: same structure, each leaf a PartitionSpec of logical names (or None).
      mesh: the device mesh.
      rules: TRAIN_RULES or SAMPLE_RULES.
    Raises:
      ShardingError naming the leaf when a dimension does not divide.
    """
    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract_tree)
    logical_leaves = treedef.flatten_up_to(logical_tree)
    out = []
    for (path, leaf), logical in zip(paths_and_leaves, logical_leaves):
        spec = PartitionSpec() if logical is None else logical_to_spec(tuple(logical), rules)
        _check_divisible(jax.tree_util.keystr(path), leaf.shape, spec, mesh)
        out.append(NamedSharding(mesh, spec))
    return jax.tree_util.tree_unflatten(treedef, out)


def named(mesh: Mesh, rules: Rules, *logical_axes: str | None) -> NamedSharding:
    """NamedSharding of one array from its logical axis names."""
    return NamedSharding(mesh, logical_to_spec(logical_axes, rules))


# ---------------------------------------------------------------- activation constraints
@dataclasses.dataclass(frozen=True)
class _Active:
    mesh: Mesh
    rules: Rules


_ACTIVE: contextvars.ContextVar[_Active | None] = contextvars.ContextVar("mesh", default=None)


@contextlib.contextmanager
def use_mesh(mesh: Mesh | None, rules: Rules) -> Iterator[None]:
    """Activates ``mesh`` and ``rules`` for :func:`constrain` while tracing."""
    token = _ACTIVE.set(None if mesh is None else _Active(mesh, rules))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def constrain(x: jax.Array, *logical_axes: str | None) -> jax.Array:
    """``with_sharding_constraint`` by logical names; no-op without an active mesh."""
    active = _ACTIVE.get()
    if active is None or active.mesh.size == 1:
        return x
    spec = logical_to_spec(logical_axes, active.rules)
    return jax.lax.with_sharding_constraint(x, NamedSharding(active.mesh, spec))
