"""A TFDS builder of Examples, written as array_record and read WITHOUT TensorFlow.

    builder = make_builder(data_cfg)          # one BuilderConfig per DataConfig
    builder.download_and_prepare(...)         # done by ``prepare``; cached per version
    source = tfds.data_source(...) / builder.as_data_source()[split]   # random access
    example = example_from_record(source[k])

The config name is ``<source>_<hash>``: the hash covers every DataConfig field that
changes the examples (not ``prompt`` nor ``tfds_data_dir``), plus the user's file
names; ``manual_dir`` is the folder of ``data.path`` (local or ``gs://``). Ratings and
averages are stored as float32 (the record format has no float64): averages come back
within ~1e-7.
Examples are keyed by (split, index), so the same files and config give byte-identical
records. Bump
``VERSION`` whenever the example layout or the history rules change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from reczero_jax.data.data_config import DataConfig
from reczero_jax.data.examples import Example, HistoryEntry, ItemReview
from reczero_jax.data.loader import load_data
from reczero_jax.paths import as_path, is_remote

_TFDS_SPLITS = {"train": "train", "validation": "validation", "test": "test"}


@dataclasses.dataclass
class RecZeroBuilderConfig(tfds.core.BuilderConfig):
    """Carries the DataConfig (with ``path`` / ``meta_path`` as names under manual_dir)."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)


def _features() -> tfds.features.FeaturesDict:
    text, f32, i64 = tfds.features.Text(), np.float32, np.int64
    return tfds.features.FeaturesDict(
        {
            "user_id": text,
            "item_id": text,
            "rating": f32,
            "timestamp": i64,
            "item_title": text,
            "item_info": text,
            "user_avg_rating": f32,
            "user_num_ratings": i64,
            "item_avg_rating": f32,
            "item_num_ratings": i64,
            "user_history": tfds.features.Sequence(
                {"item_id": text, "title": text, "rating": f32, "review": text, "timestamp": i64}
            ),
            "item_history": tfds.features.Sequence(
                {"user_id": text, "rating": f32, "review": text, "timestamp": i64}
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

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download the source files yourself (Amazon reviews, Yelp Open Dataset or "
        "MovieLens) and pass their folder as manual_dir; data.path names the file in it."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=_features(), supervised_keys=None)

    def _split_generators(self, dl_manager):
        cfg: DataConfig = self.builder_config.data
        if cfg.source != "synthetic":
            root = as_path(dl_manager.manual_dir)
            cfg = dataclasses.replace(
                cfg,
                path=str(root / cfg.path),
                meta_path=str(root / cfg.meta_path) if cfg.meta_path else "",
            )
        data = load_data(cfg)
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


def make_builder(cfg: DataConfig) -> tuple[RecZeroExamples, str | None]:
    """(builder, manual_dir) for ``cfg``; manual_dir is the folder of ``cfg.path``."""
    manual_dir = None
    local = cfg
    if cfg.source != "synthetic":
        path = _resolve(cfg.path)
        manual_dir = str(path.parent)
        meta = _resolve(cfg.meta_path) if cfg.meta_path else None
        if meta is not None and meta.parent != path.parent:
            raise ValueError(
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
    builder = RecZeroExamples(
        config=builder_config, data_dir=cfg.tfds_data_dir or None, file_format="array_record"
    )
    return builder, manual_dir


def prepare(cfg: DataConfig):
    """Prepares (once; later calls hit the cache) and returns {split: data source}."""
    builder, manual_dir = make_builder(cfg)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    return builder.as_data_source()
