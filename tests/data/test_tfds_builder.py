"""TFDS builder: array_record written and read back without TensorFlow, deterministic,
cached, exact and in example order, for the synthetic source and for user files under
manual_dir (reading through ``load_data``: tests/data/test_prepared.py)."""

import importlib.util

import pytest
import tensorflow_datasets as tfds

from reczero_jax.data.data_config import DataConfig, SyntheticConfig
from reczero_jax.data.errors import DataError
from reczero_jax.data.loader import load_raw
from reczero_jax.data.tfds_builder import config_name, example_from_record, make_builder, prepare
from tests.data import sample_files

SMALL = SyntheticConfig(num_users=40, num_items=20, interactions_per_user=8)


def _files(root):
    return {p.name: p.read_bytes() for p in sorted(root.rglob("*.array_record*"))}


def test_no_tensorflow_installed():
    assert importlib.util.find_spec("tensorflow") is None


def test_synthetic_roundtrip_deterministic_and_cached(tmp_path):
    cfg_a = DataConfig(synthetic=SMALL, tfds_data_dir=str(tmp_path / "a"))
    cfg_b = DataConfig(synthetic=SMALL, tfds_data_dir=str(tmp_path / "b"))
    sources = prepare(cfg_a)
    prepare(cfg_b)
    files_a = _files(tmp_path / "a")
    assert files_a and files_a == _files(tmp_path / "b")  # byte-identical
    expected = load_raw(cfg_a).examples
    for split in ("train", "validation", "test"):
        got = [example_from_record(sources[split][k], split) for k in range(len(sources[split]))]
        assert got == expected[split]  # record k is example k, floats exact
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*.array_record*")}
    prepare(cfg_a)  # cached: nothing rewritten
    assert mtimes == {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*.array_record*")}
    # also readable through the public entry point
    name = f"{make_builder(cfg_a)[0].name}/{config_name(cfg_a)}"
    assert len(tfds.data_source(name, data_dir=str(tmp_path / "a"))["test"]) == 40


def test_config_name_tracks_example_fields():
    base = DataConfig(synthetic=SMALL)
    assert config_name(base) == config_name(DataConfig(synthetic=SMALL, tfds_data_dir="/x"))
    assert config_name(base) != config_name(DataConfig(synthetic=SMALL, history_len=3))


def test_files_under_manual_dir(tmp_path):
    path, meta = sample_files.write_amazon(tmp_path, "amazon2018")
    cfg = DataConfig(
        source="amazon2018", path=str(path), meta_path=str(meta), tfds_data_dir=str(tmp_path / "d")
    )
    sources = prepare(cfg)
    assert len(sources["test"]) == len(load_raw(cfg).examples["test"])


def test_meta_file_outside_the_data_folder_is_a_data_error(tmp_path):
    path, meta = sample_files.write_amazon(tmp_path, "amazon2018")
    (tmp_path / "elsewhere").mkdir()
    moved = meta.rename(tmp_path / "elsewhere" / meta.name)
    cfg = DataConfig(source="amazon2018", path=str(path), meta_path=str(moved))
    with pytest.raises(DataError, match="data.meta_path"):
        make_builder(cfg)
