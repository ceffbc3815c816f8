"""One entry point from a ``DataConfig`` to split ratings and examples."""

from __future__ import annotations

import dataclasses

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
      source: the ratings table, items and the bad-input report.
      split: int8 [N], TRAIN / VALID / TEST per rating row (see splits.py).
      examples: {'train' | 'validation' | 'test': [Example]} after the history filters.
      filter_stats: how many targets each filter dropped.
      world: the synthetic world (latents), None for file sources.
    """

    source: SourceData
    split: np.ndarray
    examples: dict[str, list[Example]]
    filter_stats: dict[str, int]
    world: World | None = None

    def counts(self) -> dict:
        """Counts for results files: ratings, users, items, ratings and examples per split."""
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
