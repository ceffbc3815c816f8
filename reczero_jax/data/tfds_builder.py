"""A TFDS builder of Examples, written as array_record and read WITHOUT TensorFlow.

    builder = make_builder(data_cfg)          # one BuilderConfig per DataConfig
    builder.download_and_prepare(...)         # done by ``prepare``; cached per version
    source = tfds.data_source(...) / builder.as_data_source()[split]   # random access
    example = example_from_record(source[k])

    data = load_prepared(data_cfg)            # LoadedData whose examples read lazily

The config name is ``<source>_<hash>``: the hash covers every DataConfig field that
changes the examples (not ``prompt`` nor ``tfds_data_dir``), plus the user's file
names; ``manual_dir`` is the folder of ``data.path`` (local or ``gs://``).

Exact and ordered: ratings and averages are float64 stored as their 8 bytes
(``tf.train.Example`` would round a float feature to float32), so an example read back
is EQUAL to the one built from the raw files (dataclass ==) and its prompt identical;
records are written in example order (``disable_shuffling``: the key is the example's
index), so record k of a split is ``load_data``'s example k and ``batch_indices`` index
both alike. The same files and config give byte-identical records. The raw data's
counts and filter statistics are kept in the dataset's metadata (``metadata.json``).
Bump ``VERSION`` whenever the example layout or the history rules change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import operator
import os
import pathlib
import tempfile
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from reczero_jax.data.data_config import DataConfig
from reczero_jax.data.errors import DataError
from reczero_jax.data.examples import Example, HistoryEntry, ItemReview
from reczero_jax.data.loader import LoadedData, load_raw
from reczero_jax.data.splits import SPLIT_NAMES, assign_splits
from reczero_jax.data.synthetic import make_world
from reczero_jax.paths import absolute, as_path, is_remote

_TFDS_SPLITS = {"train": "train", "validation": "validation", "test": "test"}


@dataclasses.dataclass
class RecZeroBuilderConfig(tfds.core.BuilderConfig):
    """Carries the DataConfig (with ``path`` / ``meta_path`` as names under manual_dir)."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)


def _f64() -> tfds.features.Tensor:
    """A float64 scalar stored as its 8 bytes: exact (a float feature would be float32)."""
    return tfds.features.Tensor(shape=(), dtype=np.float64, encoding=tfds.features.Encoding.BYTES)


def _features() -> tfds.features.FeaturesDict:
    text, i64 = tfds.features.Text(), np.int64
    return tfds.features.FeaturesDict(
        {
            "user_id": text,
            "item_id": text,
            "rating": _f64(),
            "timestamp": i64,
            "item_title": text,
            "item_info": text,
            "user_avg_rating": _f64(),
            "user_num_ratings": i64,
            "item_avg_rating": _f64(),
            "item_num_ratings": i64,
            "user_history": tfds.features.Sequence(
                {"item_id": text, "title": text, "rating": _f64(), "review": text, "timestamp": i64}
            ),
            "item_history": tfds.features.Sequence(
                {"user_id": text, "rating": _f64(), "review": text, "timestamp": i64}
            ),
        }
    )


def example_to_record(e: Example) -> dict:
    """An Example as a TFDS feature dict (the split is implied by where it is stored)."""
    record = dataclasses.asdict(e)
    record.pop("split")
    for key, fields in (
        ("user_history", ("item_id", "title", "rating", "review", "timestamp")),
        ("item_history", ("user_id", "rating", "review", "timestamp")),
    ):
        entries = record[key]
        record[key] = {f: [h[f] for h in entries] for f in fields}
    return record


def _text(x) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def example_from_record(record: dict, split: str) -> Example:
    """Inverse of example_to_record for a record read back by ``tfds.data_source``."""
    uh, ih = record["user_history"], record["item_history"]
    return Example(
        user_id=_text(record["user_id"]),
        item_id=_text(record["item_id"]),
        rating=float(record["rating"]),
        timestamp=int(record["timestamp"]),
        split=split,
        item_title=_text(record["item_title"]),
        item_info=_text(record["item_info"]),
        user_history=tuple(
            HistoryEntry(_text(a), _text(b), float(c), _text(d), int(t))
            for a, b, c, d, t in zip(
                uh["item_id"], uh["title"], uh["rating"], uh["review"], uh["timestamp"]
            )
        ),
        user_avg_rating=float(record["user_avg_rating"]),
        user_num_ratings=int(record["user_num_ratings"]),
        item_history=tuple(
            ItemReview(_text(a), float(b), _text(c), int(t))
            for a, b, c, t in zip(ih["user_id"], ih["rating"], ih["review"], ih["timestamp"])
        ),
        item_avg_rating=float(record["item_avg_rating"]),
        item_num_ratings=int(record["item_num_ratings"]),
    )


class RecZeroExamples(tfds.core.GeneratorBasedBuilder):
    """RecZero rating-prediction examples with leak-free user and item histories."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
        "2.0.0": "Records in example order (disable_shuffling; key = example index). Ratings "
        "and averages as float64 (8 bytes each, exact; were float32). The raw data's counts "
        "and filter statistics in the metadata.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download the source files yourself (Amazon reviews, Yelp Open Dataset or "
        "MovieLens) and pass their folder as manual_dir; data.path names the file in it."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        # tfds 4.9 reads ``disable_shuffling`` from the DatasetInfo (a class attribute of
        # that name is ignored): records are then written in key order
        return self.dataset_info_from_configs(
            features=_features(),
            supervised_keys=None,
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        cfg: DataConfig = self.builder_config.data
        if cfg.source != "synthetic":
            root = as_path(dl_manager.manual_dir)
            cfg = dataclasses.replace(
                cfg,
                path=str(root / cfg.path),
                meta_path=str(root / cfg.meta_path) if cfg.meta_path else "",
            )
        data = load_raw(cfg)
        for name, examples in data.examples.items():
            if not examples:  # TFDS stores no empty split
                raise DataError(
                    f"{cfg.path or 'synthetic world'}: the {name} split has no example after "
                    f"the history filters ({data.filter_stats}); nothing to prepare"
                )
        self.info.metadata["counts"] = data.counts()
        self.info.metadata["filter_stats"] = dict(data.filter_stats)
        return {
            tfds_split: self._generate_examples(data.examples[name])
            for name, tfds_split in _TFDS_SPLITS.items()
        }

    def _generate_examples(self, examples: list[Example]):
        for index, e in enumerate(examples):
            yield index, example_to_record(e)


def config_name(cfg: DataConfig) -> str:
    """'<source>_<12 hex>' from the example-shaping fields and the file names."""
    fields = dataclasses.asdict(cfg)
    fields.pop("prompt")
    fields.pop("tfds_data_dir")
    fields["path"] = pathlib.Path(cfg.path).name if cfg.path else ""
    fields["meta_path"] = pathlib.Path(cfg.meta_path).name if cfg.meta_path else ""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return f"{cfg.source}_{digest}"


def _resolve(path: str):
    """A local path resolved (symlinks, relative parts); a URI as it is."""
    return as_path(path) if is_remote(path) else pathlib.Path(path).resolve()


@contextlib.contextmanager
def _quiet():
    """absl at ERROR for a block: tfds warns on every builder of a custom config, and when
    it looks into a folder that holds no prepared dataset yet."""
    old = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(old)


def make_builder(cfg: DataConfig) -> tuple[RecZeroExamples, str | None]:
    """(builder, manual_dir) for ``cfg``; manual_dir is the folder of ``cfg.path``."""
    manual_dir = None
    local = cfg
    if cfg.source != "synthetic":
        path = _resolve(cfg.path)
        manual_dir = str(path.parent)
        meta = _resolve(cfg.meta_path) if cfg.meta_path else None
        if meta is not None and meta.parent != path.parent:
            raise DataError(
                f"data.meta_path {meta} must lie in the folder of data.path ({path.parent}) "
                "for the TFDS builder (one manual_dir)"
            )
        local = dataclasses.replace(cfg, path=path.name, meta_path=meta.name if meta else "")
    builder_config = RecZeroBuilderConfig(
        name=config_name(cfg),
        version=RecZeroExamples.VERSION,
        description=f"RecZero examples from {cfg.source}",
        data=local,
    )
    data_dir = os.fspath(absolute(cfg.tfds_data_dir)) if cfg.tfds_data_dir else None
    with _quiet():
        builder = RecZeroExamples(
            config=builder_config, data_dir=data_dir, file_format="array_record"
        )
    return builder, manual_dir


def prepare(cfg: DataConfig):
    """Prepares (once; later calls hit the cache) and returns {split: data source}.

    Writes only the dataset's folder under ``cfg.tfds_data_dir`` (TFDS's download folder
    is a temporary one: nothing is downloaded, the files are read from ``manual_dir``).
    """
    builder, manual_dir = make_builder(cfg)
    with tempfile.TemporaryDirectory(prefix="reczero_tfds_") as downloads:
        builder.download_and_prepare(
            download_dir=downloads,
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
        )
    return builder.as_data_source()


class PreparedExamples(Sequence):
    """The examples of one prepared split, read lazily: ``[k]`` reads and decodes record k
    (= example k of ``load_data`` on the raw files), so a process reads only the records
    it uses. A slice gives a list."""

    def __init__(self, source, split: str):
        self.source, self.split = source, split

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        k = operator.index(k)
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(f"example {k} of {len(self)} ({self.split})")
        return example_from_record(self.source[k], self.split)


def load_prepared(cfg: DataConfig, splits: tuple[str, ...] = SPLIT_NAMES) -> LoadedData:
    """The examples of ``splits`` from the dataset prepared for ``cfg`` under
    ``cfg.tfds_data_dir`` (:class:`PreparedExamples`, read lazily).

    A prepared dataset holds no ratings table: for the synthetic source the world is drawn
    again from the config (cheap; the teacher and the Bayes floor read it) with its split,
    so the LoadedData is complete; for file sources ``source`` and ``split`` are None and
    the counts come from the dataset's metadata.

    Raises DataError naming ``data.tfds_data_dir`` when the dataset is not prepared there.
    """
    builder, _ = make_builder(cfg)
    with _quiet():
        prepared = builder.is_prepared()
    if not prepared:
        raise DataError(
            f"config.data.tfds_data_dir: {cfg.tfds_data_dir} holds no prepared dataset "
            f"{builder.name}/{builder.builder_config.name}/{builder.version} for this data "
            "section; run the same command with --config.mode=prepare first"
        )
    sources = builder.as_data_source()
    metadata = builder.info.metadata or {}
    examples = {name: PreparedExamples(sources[name], name) for name in splits}
    world = source = split = None
    if cfg.source == "synthetic":
        world = make_world(cfg.synthetic)
        source = world.data
        split = assign_splits(source.ratings, cfg.split, cfg.valid_fraction, cfg.test_fraction)
    return LoadedData(
        source=source,
        split=split,
        examples=examples,
        filter_stats=dict(metadata.get("filter_stats", {})),
        world=world,
        stored_counts=dict(metadata.get("counts", {})),
    )
