"""The ceilings that benchmarks report fractions of: datasheet peaks per accelerator, and
the same two rates measured on the device in use.

Datasheet rates are per chip. ``datasheet(table, kind)`` finds a device's entry by a name
contained in its ``device_kind`` (e.g. 'NVIDIA H200', 'TPU v5 lite').
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp

# HBM bandwidth, bytes/s.
PEAK_HBM_BYTES_PER_S = {
    "H100": 3.35e12,
    "H200": 4.8e12,
    "A100": 2.0e12,
    "TPU v5e": 8.2e11,
    "TPU v5p": 2.76e12,
    "TPU v4": 1.2e12,
    "TPU v6e": 1.64e12,
}
# Dense bfloat16 matrix rate, FLOP/s.
PEAK_BF16_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v4": 275e12,
    "TPU v6e": 918e12,
    "TPU v6 lite": 918e12,
}


def datasheet(table: dict[str, float], kind: str, override: float = 0.0) -> float | None:
    """``override`` when > 0, else the first entry of ``table`` whose name is in ``kind``
    (case-insensitive), else None."""
    if override > 0:
        return override
    for name, value in table.items():
        if name.lower() in kind.lower():
            return value
    return None


def median_seconds(fn, repeats: int = 10) -> float:
    """Median wall time of ``fn()`` (which must block on its result) after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measured_matmul_flops(n: int = 8192, repeats: int = 10, dtype=jnp.bfloat16) -> float:
    """FLOP/s of an n^3 matrix product in ``dtype`` on the default device (random
    operands)."""
    ka, kb = jax.random.split(jax.random.key(1))
    a = jax.random.normal(ka, (n, n), dtype)
    b = jax.random.normal(kb, (n, n), dtype)
    mm = jax.jit(lambda x, y: x @ y)
    return 2.0 * n**3 / median_seconds(lambda: mm(a, b).block_until_ready(), repeats)


def measured_copy_bandwidth(gib: float = 4.0, repeats: int = 10) -> float:
    """Bytes/s (read + written) of an elementwise pass over a ``gib`` GiB bfloat16 array on
    the default device."""
    x = jnp.ones((int(gib * (1 << 30)) // 2,), jnp.bfloat16)
    bump = jax.jit(lambda a: a + 1)
    return 2.0 * x.size * 2 / median_seconds(lambda: bump(x).block_until_ready(), repeats)
