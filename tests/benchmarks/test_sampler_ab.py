"""benchmarks/sampler_ab.py: the baseline commit's package exported under another name,
both samplers built in one process and timed alternately; against HEAD itself (this
checkout's sampler code unchanged) both sample the same tokens."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from tests.benchmarks.scripts import load_script

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or _git("rev-parse", "HEAD").returncode != 0,
    reason="needs a git checkout",
)


def test_the_baseline_package_is_renamed_throughout(tmp_path):
    ab = load_script("sampler_ab")
    ab.export_baseline("HEAD", tmp_path)
    package = tmp_path / ab.BASELINE_NAME
    assert (package / "sampling" / "sampler.py").is_file()
    assert not (tmp_path / "reczero_jax").exists()
    leftovers = [p for p in package.rglob("*.py") if "reczero_jax" in p.read_text()]
    assert leftovers == []


def test_against_head_it_times_both_and_samples_the_same_tokens(capsys):
    ab = load_script("sampler_ab")
    result = ab.main(
        ["--baseline", "HEAD", "--prompts", "1", "--samples", "2", "--prompt_len", "8",
         "--new_tokens", "4", "--calls", "2"]
    )  # fmt: skip
    assert result["baseline_ms"] > 0 and result["current_ms"] > 0 and result["median_ratio"] > 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('{"baseline": "HEAD"')
    unchanged = _git("diff", "--quiet", "HEAD", "--", "reczero_jax").returncode == 0
    if unchanged:  # the same code, the same key: the same samples
        assert result["same_tokens"]
