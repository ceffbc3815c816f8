"""Preemption: SIGTERM to a real training process mid-GRPO checkpoints the step it is at and
exits 0; relaunching the same command resumes and ends bitwise equal to a run that was
never interrupted."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from reczero_jax import huge_pages
from reczero_jax.checkpointing import checkpoint_steps
from reczero_jax.rl.preemption import PreemptionWatch
from tests.rl.test_training import final_params, tiny_settings
from tests.xla_flags import child_xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS = 60

CONFIG = """
from tests.rl.test_training import tiny_settings
import dataclasses, ml_collections

def get_config(arg=None):
    settings = tiny_settings(WORKDIR, steps=STEPS)
    config = ml_collections.ConfigDict(dataclasses.asdict(settings))
    config.checkpoint.save_every = 1000  # only the preemption save and the last step's
    return config
"""


def _command(tmp_path, name):
    config = tmp_path / f"{name}.py"
    workdir = tmp_path / name
    config.write_text(f"WORKDIR = {str(workdir)!r}\nSTEPS = {STEPS}\n" + CONFIG)
    return [sys.executable, "-m", "reczero_jax.main", f"--config={config}"], workdir


def _env():
    env = dict(os.environ, XLA_FLAGS=child_xla_flags(), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_sigterm_checkpoints_exits_0_and_the_relaunch_is_exact(tmp_path):
    straight_cmd, straight_dir = _command(tmp_path, "straight")
    done = subprocess.run(straight_cmd, cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    # the run started as python -m reczero_jax.main starts: malloc on huge pages where the
    # host allows them (reczero_jax.huge_pages restarted the process once)
    env = {k: v for k, v in _env().items() if k != huge_pages.MARKER}
    why = huge_pages.decision(env, huge_pages.thp_mode(), huge_pages.glibc_version())
    expected = why or f"on ({huge_pages.TUNABLE}={huge_pages.VALUE}, set at start-up)"
    assert f"glibc malloc on transparent huge pages {expected}" in done.stderr

    cmd, workdir = _command(tmp_path, "stopped")
    proc = subprocess.Popen(  # messages are logged to stderr
        cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # wait until GRPO steps are logged
        if metrics.is_file() and "grpo/" in metrics.read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-2000:]
    assert "grpo preempted at step" in out and "relaunch the same command" in out
    (step,) = checkpoint_steps(workdir / "checkpoints" / "grpo")
    assert 5 <= step < STEPS
    assert not (workdir / "results.json").exists()

    again = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming step {step}" in again.stderr
    assert (workdir / "results.json").is_file()
    jax.tree.map(
        np.testing.assert_array_equal,
        final_params(tiny_settings(straight_dir, steps=STEPS)),
        final_params(tiny_settings(workdir, steps=STEPS)),
    )


def test_the_watch_stops_after_sigterm_and_restores_the_handler():
    previous = signal.getsignal(signal.SIGTERM)
    with PreemptionWatch() as watch:
        assert not watch.stop_at(1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert watch.stop_at(2)
    assert signal.getsignal(signal.SIGTERM) is previous
