"""The command line: the generate mode end to end, and one-line errors for bad input."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from tests.xla_flags import child_xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(*args, timeout=240):
    env = dict(os.environ)
    env["XLA_FLAGS"] = child_xla_flags()  # one CPU device, as a user would have
    return subprocess.run(
        [sys.executable, "-m", "reczero_jax.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_generate_prints_g_samples_of_a_tiny_offline_model(tmp_path):
    result = _run(
        "--config=configs/generate.py",
        f"--config.workdir={tmp_path}",
        "--config.generate.num_samples=3",
        "--config.sampling.max_new_tokens=8",
        "--config.generate.prompt=Hello there",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("--- sample ") == 3
    assert "weights: scratch" in result.stderr
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.sampling.nope=1", "config.sampling.nope: unknown key"),
        ("--config.sampling.top_k=abc", "top_k"),
        ("--config.sampling.top_p=2.0", "config.sampling.top_p: must be in (0, 1]"),
        (
            "--config.sampling.decode_loop=unroll",
            "config.sampling.decode_loop: must be one of ('auto', 'unrolled', 'scanned')",
        ),
        ("--config.mesh.shape=(1,1,8)", "config.mesh.shape"),
        ("--config.model.hf_dir=/does/not/exist", "/does/not/exist"),
        ("--config.generate.prompt=", 'config.generate.prompt: mode "generate" needs a prompt'),
    ],
)
def test_bad_input_gets_one_line_error(override, message, tmp_path):
    result = _run("--config=configs/generate.py", f"--config.workdir={tmp_path}", override)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_tensor_parallel_size_must_divide_heads(tmp_path):
    env_mesh = "--config.mesh.shape=(1,1,8)"
    env = dict(os.environ)
    env["XLA_FLAGS"] = child_xla_flags(devices=8)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reczero_jax.main",
            "--config=configs/generate.py",
            f"--config.workdir={tmp_path}",
            env_mesh,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 2
    assert "config.mesh.shape: tensor=8 does not divide" in result.stderr
