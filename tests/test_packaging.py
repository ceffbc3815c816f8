"""pyproject.toml declares the same pins as requirements*.txt, and the main job's code
path never imports torch (it is a test/tools extra)."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _requirements(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith(("#", "-r"))]


def test_pyproject_pins_equal_the_requirements_files():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == _requirements("requirements.txt")
    extras = project["optional-dependencies"]
    assert extras["test"] == _requirements("requirements-test.txt")
    assert extras["gcs"] == _requirements("requirements-gcs.txt")
    assert extras["bench"] == _requirements("requirements-bench.txt")
    assert set(extras["tpu"]) >= set(extras["gcs"]) and "jax[tpu]==0.10.2" in extras["tpu"]
    assert "torch==2.13.0" not in project["dependencies"]


def test_the_main_job_runs_without_torch():
    """Every module the training modes import, with torch made unimportable."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import reczero_jax.main, reczero_jax.rl.run, reczero_jax.modes.predict\n"
        "import reczero_jax.modes.report, reczero_jax.modes.baselines, reczero_jax.engine\n"
        "import reczero_jax.hf.checkpoint, reczero_jax.data.loader\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
