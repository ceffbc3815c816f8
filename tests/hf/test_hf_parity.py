"""The hf_parity tool: exit codes for a passing, a failing and a missing checkpoint."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np

from reczero_jax.hf import checkpoint
from reczero_jax.hf import safetensors_io as st
from reczero_jax.tools import hf_parity


def test_passes_on_a_good_checkpoint_with_roundtrip(tiny_hf_dir, capsys):
    assert hf_parity.main(["--hf_dir", str(tiny_hf_dir("qwen3")), "--roundtrip"]) == 0
    out = capsys.readouterr().out
    assert "ours vs transformers (float32)" in out and "on our export" in out and "OK" in out


def _corrupt_copy(src, dst, name, value):
    shutil.copytree(src, dst)
    tensors = st.load_safetensors(dst / st.SINGLE_FILE)
    tensors[name][3, 5] = value
    st.save_safetensors(dst / st.SINGLE_FILE, tensors)
    return dst


def test_fails_when_our_weight_differs(tiny_hf_dir, tmp_path, monkeypatch, capsys):
    """Only our side reads the corrupted copy (transformers reads the original)."""
    good = tiny_hf_dir("llama")
    bad = _corrupt_copy(good, tmp_path / "bad", "model.layers.1.mlp.up_proj.weight", 1.0)
    original = checkpoint.load_hf_params
    monkeypatch.setattr(checkpoint, "load_hf_params", lambda _, *a, **k: original(bad, *a, **k))
    assert hf_parity.main(["--hf_dir", str(good)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_fails_on_a_nan_weight(tiny_hf_dir, tmp_path, capsys):
    bad = _corrupt_copy(
        tiny_hf_dir("qwen2"), tmp_path / "nan", "model.layers.0.mlp.down_proj.weight", np.nan
    )
    assert hf_parity.main(["--hf_dir", str(bad)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_missing_dir_is_a_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "reczero_jax.tools.hf_parity", "--hf_dir", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "is not a folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_folder_without_checkpoint_exits_2(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{not json")
    assert hf_parity.main(["--hf_dir", str(tmp_path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
