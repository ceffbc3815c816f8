"""Our safetensors reader/writer against the safetensors library and transformers."""

from __future__ import annotations

import json
import struct

import ml_dtypes
import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch

from reczero_jax.hf import safetensors_io as st


def _tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "a.f32": rng.standard_normal((3, 5)).astype(np.float32),
        "b.bf16": rng.standard_normal((4, 2, 3)).astype(ml_dtypes.bfloat16),
        "c.f16": rng.standard_normal((7,)).astype(np.float16),
        "d.i64": rng.integers(-(2**40), 2**40, (2, 2)),
        "e.scalar": np.array(3.5, np.float32),
    }


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).view(f"u{np.asarray(a).dtype.itemsize}")


def test_safetensors_library_reads_what_we_write(tmp_path):
    tensors = _tensors()
    path = tmp_path / "ours.safetensors"
    st.save_safetensors(path, tensors)
    (header_len,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert (8 + header_len) % 8 == 0
    with safetensors.safe_open(path, framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
        assert set(f.keys()) == set(tensors)
    theirs = safetensors.torch.load_file(path)
    for name, ours in tensors.items():
        got = theirs[name]
        if ours.dtype == ml_dtypes.bfloat16:
            assert got.dtype == torch.bfloat16
            np.testing.assert_array_equal(got.view(torch.int16).numpy(), _bits(ours).view(np.int16))
        else:
            np.testing.assert_array_equal(got.numpy(), ours)
    np.testing.assert_array_equal(safetensors.numpy.load_file(path)["a.f32"], tensors["a.f32"])


def test_we_read_what_safetensors_library_writes(tmp_path):
    torch.manual_seed(0)
    theirs = {
        "w.f32": torch.randn(6, 4),
        "w.bf16": torch.randn(3, 8).to(torch.bfloat16),
        "i.i64": torch.arange(10, dtype=torch.int64).reshape(2, 5),
    }
    path = tmp_path / "theirs.safetensors"
    safetensors.torch.save_file(theirs, path, metadata={"format": "pt"})
    f = st.SafetensorsFile(path)
    assert f.metadata == {"format": "pt"}
    assert f.refs["w.bf16"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(f.refs["w.f32"].array(), theirs["w.f32"].numpy())
    np.testing.assert_array_equal(
        _bits(f.refs["w.bf16"].array()).view(np.int16), theirs["w.bf16"].view(torch.int16).numpy()
    )
    np.testing.assert_array_equal(f.refs["i.i64"].array(), theirs["i.i64"].numpy())
    # A slice of the memmapped view is a view too (nothing read until used).
    part = f.refs["w.f32"].array()[2:4, 1:]
    assert not part.flags.owndata
    np.testing.assert_array_equal(part, theirs["w.f32"].numpy()[2:4, 1:])


def test_sharded_write_read_roundtrip(tmp_path):
    tensors = {f"t{k}": np.full((64,), k, np.float32) for k in range(10)}  # 256 B each
    names = st.save_sharded_safetensors(tmp_path, tensors, max_shard_bytes=600)
    assert names[0] == "model-00001-of-00005.safetensors" and len(names) == 5
    index = json.loads((tmp_path / st.INDEX_FILE).read_text())
    assert index["metadata"]["total_size"] == 10 * 256
    assert set(index["weight_map"]) == set(tensors)
    ckpt = st.SafetensorsCheckpoint(tmp_path)
    for name, value in tensors.items():
        np.testing.assert_array_equal(ckpt[name].array(), value)
        assert ckpt[name].file.name == index["weight_map"][name]
        with safetensors.safe_open(tmp_path / ckpt[name].file.name, framework="np") as f:
            np.testing.assert_array_equal(f.get_tensor(name), value)


def test_small_total_writes_one_file_without_index(tmp_path):
    names = st.save_sharded_safetensors(tmp_path, _tensors())
    assert names == [st.SINGLE_FILE]
    assert not (tmp_path / st.INDEX_FILE).exists()
    loaded = st.load_safetensors(tmp_path)
    for name, value in _tensors().items():
        np.testing.assert_array_equal(_bits(loaded[name]), _bits(value))


def test_reads_transformers_sharded_checkpoint(tiny_hf_dir):
    folder = tiny_hf_dir("llama_sharded")
    assert (folder / st.INDEX_FILE).is_file()
    ckpt = st.SafetensorsCheckpoint(folder)
    assert len(ckpt.files) > 1
    reference = {}
    for file in folder.glob("*.safetensors"):
        reference.update(safetensors.numpy.load_file(file))
    assert set(ckpt.refs) == set(reference)
    for name, value in reference.items():
        np.testing.assert_array_equal(ckpt[name].array(), value)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(st.SafetensorsError, match="neither"):
        st.SafetensorsCheckpoint(tmp_path)
    path = tmp_path / "model.safetensors"
    st.save_safetensors(path, _tensors())
    path.write_bytes(path.read_bytes()[:-8])  # truncated data
    with pytest.raises(st.SafetensorsError, match="do not fit"):
        st.SafetensorsFile(path)
    path.write_bytes(b"\x05")
    with pytest.raises(st.SafetensorsError, match="too short"):
        st.SafetensorsFile(path)
