"""Mode 'prepare': the examples of the ``data`` section written once, as a TFDS dataset
(array_record), under ``data.tfds_data_dir`` (local or ``gs://``,
:mod:`reczero_jax.paths`); prints the examples per split and writes nothing else.

The training and evaluation modes then read that dataset, lazily, whenever
``data.tfds_data_dir`` is set (:func:`reczero_jax.data.loader.load_data`): run the same
command with ``--config.mode=prepare`` first. A prepared dataset is found again by its
data section (the config name hashes every field that shapes the examples), and a
second prepare of the same section reads nothing and writes nothing.
"""

from __future__ import annotations

import time

from reczero_jax import multihost
from reczero_jax.data.tfds_builder import make_builder, prepare
from reczero_jax.settings import Settings


def run(settings: Settings) -> dict:
    """Prepares the dataset (once: a prepared one is reused); returns
    ``{'mode', 'dataset', 'data_dir', 'examples': {split: count}, 'seconds'}``. On a
    multi-process run only process 0 prepares (the others return ``{}``)."""
    if not multihost.is_primary():
        return {}
    t0 = time.perf_counter()
    cfg = settings.data
    builder, _ = make_builder(cfg)
    name = f"{builder.name}/{builder.builder_config.name}/{builder.version}"
    sources = prepare(cfg)
    counts = {split: len(sources[split]) for split in ("train", "validation", "test")}
    results = {
        "mode": "prepare",
        "dataset": name,
        "data_dir": cfg.tfds_data_dir,
        "examples": counts,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    print(f"prepared {name} in {cfg.tfds_data_dir}")
    for split, n in counts.items():
        print(f"  {split:<10} {n:>9,} examples")
    return results
