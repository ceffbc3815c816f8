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

# Splits that must hold examples: training draws from train, evaluation reads test.
REQUIRED_SPLITS = ("train", "test")
# build_examples' filters, in the order they apply: counter name -> what each removes.
FILTERS = (
    ("dropped_empty_user_history", "'no earlier rating by the user'"),
    (
        "dropped_empty_item_history",
        "'no earlier rating of the item by another user' (data.item_history_len="
        "{cfg.item_history_len}; 0 asks only for an earlier rating of the item)",
    ),
    (
        "dropped_min_history_total",
        "'fewer than data.min_history_total={cfg.min_history_total} history entries'",
    ),
)

SPLIT_HINTS = {
    "leave_last_out": "leave_last_out keeps each user's last rating for test and the one "
    "before for validation: train needs users with 3 or more ratings",
    "global_time": "global_time splits the time range by data.valid_fraction="
    "{cfg.valid_fraction} and data.test_fraction={cfg.test_fraction}; ratings of one "
    "timestamp share a split",
}


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

    Raises DataError naming the file when a path is missing or nothing usable was read,
    and when a requested train or test split holds no example: the message says what the
    reader skipped, what the split assigned and what each history filter removed.
    """
    world = None
    if cfg.source == "synthetic":
        world = make_world(cfg.synthetic)
        source = world.data
    else:
        source = read_source(cfg.source, cfg.path, cfg.meta_path)
    split = assign_splits(source.ratings, cfg.split, cfg.valid_fraction, cfg.test_fraction)
    examples, stats = _build(cfg, source, split, splits)
    for name in REQUIRED_SPLITS:
        if name in splits and not examples[name]:
            raise DataError(no_examples_message(cfg, source, split, name))
    return LoadedData(
        source=source, split=split, examples=examples, filter_stats=stats, world=world
    )


def _build(cfg: DataConfig, source: SourceData, split: np.ndarray, splits):
    """The ``data`` section's examples of ``splits`` and the history filters' counts."""
    return build_examples(
        source.ratings,
        source.items,
        split,
        history_len=cfg.history_len,
        item_history_len=cfg.item_history_len,
        review_chars=cfg.review_chars,
        min_history_total=cfg.min_history_total,
        splits=splits,
    )


def no_examples_message(cfg: DataConfig, source: SourceData, split: np.ndarray, name: str) -> str:
    """One line on why split ``name`` holds no example: what the reader kept, how many
    ratings the split assigned to it, and how many targets each history filter removed, in
    the order they apply, with the config keys that relax them."""
    where = cfg.path or "synthetic world"
    report = source.report
    parts = []
    if cfg.source != "synthetic":
        skipped = sorted(report.skipped.items(), key=lambda kv: -kv[1])[:3]
        reasons = ", ".join(f"{n} {k}" for k, n in skipped) or "none"
        parts.append(
            f"the reader kept {report.kept} ratings of {report.lines_read} lines (skipped: "
            f"{reasons})"
        )
    targets = int(np.sum(split == SPLIT_NAMES.index(name)))
    parts.append(
        f"data.split={cfg.split!r} gave {targets} of {len(source.ratings)} ratings to {name}"
    )
    if not targets:
        hint = SPLIT_HINTS[cfg.split].format(cfg=cfg)
        return f"{where}: no usable {name} example: " + "; ".join(parts) + f" ({hint})"
    _, stats = _build(cfg, source, split, (name,))  # this split's counts (error path only)
    filters = ", ".join(
        f"{what.format(cfg=cfg)} removed {stats.get(key, 0)}" for key, what in FILTERS
    )
    parts.append(f"the history filters, in order: {filters}")
    return (
        f"{where}: no usable {name} example: " + "; ".join(parts) + " (too few earlier "
        "ratings per user or per item: use more data, or relax the filters named)"
    )
