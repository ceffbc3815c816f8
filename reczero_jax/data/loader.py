"""One entry point from a ``DataConfig`` to split ratings and examples: the raw files (or
the synthetic world), or the TFDS dataset prepared from them under ``data.tfds_data_dir``
(``mode=prepare``; :mod:`reczero_jax.data.tfds_builder`, imported only then)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from reczero_jax.data.data_config import DataConfig
from reczero_jax.data.errors import DataError
from reczero_jax.data.examples import Example, build_examples
from reczero_jax.data.readers import read_source
from reczero_jax.data.splits import SPLIT_NAMES, assign_splits
from reczero_jax.data.synthetic import World, make_world
from reczero_jax.data.tables import SourceData


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedData:
    """Everything the modes need.

    Attributes:
      source: the ratings table, items and the bad-input report; None when the examples
        come from a prepared dataset of a file source (it holds no ratings table).
      split: int8 [N], TRAIN / VALID / TEST per rating row (see splits.py); None with
        ``source``.
      examples: {'train' | 'validation' | 'test': a sequence of Example} after the history
        filters: lists, or lazy sequences that read a prepared dataset's records.
      filter_stats: how many targets each filter dropped.
      world: the synthetic world (latents), None for file sources.
      stored_counts: the raw data's :meth:`counts`, kept with a prepared dataset.
    """

    source: SourceData | None
    split: np.ndarray | None
    examples: dict[str, Sequence[Example]]
    filter_stats: dict[str, int]
    world: World | None = None
    stored_counts: dict | None = None

    def counts(self) -> dict:
        """Counts for results files: ratings, users, items, ratings and examples per split
        (without a ratings table: those stored with the prepared dataset)."""
        if self.source is None:
            out = dict(self.stored_counts or {})
            out.update({f"{k}_examples": len(v) for k, v in self.examples.items()})
            out.update(self.filter_stats)
            return out
        r = self.source.ratings
        out = {
            "ratings": len(r),
            "users": r.num_users,
            "items": r.num_items,
            "skipped_lines": self.source.report.num_skipped,
        }
        for k, name in enumerate(SPLIT_NAMES):
            out[f"{name}_ratings"] = int(np.sum(self.split == k))
            if name in self.examples:  # only the splits that were built
                out[f"{name}_examples"] = len(self.examples[name])
        out.update(self.filter_stats)
        return out


def load_data(cfg: DataConfig, splits: tuple[str, ...] = SPLIT_NAMES) -> LoadedData:
    """The examples of ``splits``: read lazily from the dataset prepared under
    ``cfg.tfds_data_dir`` when it is set (DataError naming it when nothing is prepared
    there), else built from the raw data (:func:`load_raw`). Both give equal examples in
    the same order."""
    if cfg.tfds_data_dir:
        from reczero_jax.data.tfds_builder import load_prepared

        return load_prepared(cfg, splits)
    return load_raw(cfg, splits)


def load_raw(cfg: DataConfig, splits: tuple[str, ...] = SPLIT_NAMES) -> LoadedData:
    """Reads (or generates) the ratings, splits them and builds the examples of ``splits``.

    Raises DataError naming the file when a path is missing or nothing usable was read.
    """
    world = None
    if cfg.source == "synthetic":
        world = make_world(cfg.synthetic)
        source = world.data
    else:
        source = read_source(cfg.source, cfg.path, cfg.meta_path)
    split = assign_splits(source.ratings, cfg.split, cfg.valid_fraction, cfg.test_fraction)
    examples, stats = build_examples(
        source.ratings,
        source.items,
        split,
        history_len=cfg.history_len,
        item_history_len=cfg.item_history_len,
        review_chars=cfg.review_chars,
        min_history_total=cfg.min_history_total,
        splits=splits,
    )
    if "test" in splits and not examples["test"]:
        raise DataError(
            f"{cfg.path or 'synthetic world'}: no test example survived the history filters "
            f"({stats}); the data set is too small or too sparse"
        )
    return LoadedData(
        source=source, split=split, examples=examples, filter_stats=stats, world=world
    )
