"""The few things that differ when a run spans several processes (one per host).

In a multi-controller JAX job every process runs the same program; a global array's rows
live on the devices of several processes. Each process reads only the rows its devices
hold (:func:`local_rows`) and builds the global array from them
(:func:`global_array`); values needed on the host (metrics, texts) are gathered with
:func:`to_host`. With one process every function reduces to the obvious single-host
operation, so the single-host path is the same code.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Sharding


def is_primary() -> bool:
    """Process 0: the one that prints and writes run files."""
    return jax.process_index() == 0


def local_rows(sharding: Sharding, num_rows: int) -> slice:
    """The contiguous rows [start, stop) of a [num_rows, ...] array split along its first
    axis by ``sharding`` that this process's devices hold."""
    spans = {
        (index[0].start or 0, num_rows if index[0].stop is None else index[0].stop)
        for index in sharding.addressable_devices_indices_map((num_rows,)).values()
    }
    start, stop = min(s for s, _ in spans), max(e for _, e in spans)
    held = sum(e - s for s, e in spans)
    if held != stop - start and jax.process_count() > 1:
        raise ValueError(f"this process's rows of {num_rows} are not contiguous: {sorted(spans)}")
    return slice(start, stop)


def global_array(sharding: Sharding, local: np.ndarray, num_rows: int) -> jax.Array:
    """The [num_rows, ...] global array whose rows :func:`local_rows` are ``local``."""
    return jax.make_array_from_process_local_data(sharding, local, (num_rows, *local.shape[1:]))


def agree_max(value: int) -> int:
    """The largest ``value`` over all processes."""
    if jax.process_count() == 1:
        return int(value)
    from jax.experimental import multihost_utils

    return int(np.max(multihost_utils.process_allgather(np.asarray(value, np.int64))))


def to_host(x) -> np.ndarray:
    """The whole value of array ``x`` as numpy, on every process."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def barrier(name: str) -> None:
    """Every process waits here until all have arrived (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def replicate(tree, sharding: Sharding):
    """Host values that every process holds alike (keys, small tables) as global arrays
    of the replicated ``sharding``."""

    def put(x):
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(put, tree)
