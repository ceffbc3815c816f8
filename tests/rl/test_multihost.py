"""Two CPU processes on localhost (jax.distributed, gloo collectives) run a few GRPO steps of
a tiny model and end with the same parameters as one process over the same global batch;
only process 0 prints and writes the run files."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import safetensors.numpy

from reczero_jax.observe import read_jsonl
from tests.rl.test_training import final_params, tiny_settings
from tests.xla_flags import child_xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[2]

CONFIG = """
import dataclasses, ml_collections
from tests.rl.test_training import tiny_settings

def get_config(arg=None):
    settings = tiny_settings(WORKDIR, mode="recone", mesh=(1, -1, 1), steps=3)
    config = ml_collections.ConfigDict(dataclasses.asdict(settings))
    config.sft.steps = 2
    config.checkpoint.export_hf = True
    return config
"""


def _config(tmp_path, name):
    path = tmp_path / f"{name}.py"
    path.write_text(f"WORKDIR = {str(tmp_path / name)!r}\n" + CONFIG)
    return path, tmp_path / name


def _env(devices):
    env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = child_xla_flags(devices)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multihost_two_processes_equal_one_process(tmp_path):
    main = [sys.executable, "-m", "reczero_jax.main"]
    one_cfg, one_dir = _config(tmp_path, "one")
    one = subprocess.run(
        [*main, f"--config={one_cfg}"], cwd=ROOT, env=_env(2), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]

    two_cfg, two_dir = _config(tmp_path, "two")
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                *main,
                f"--config={two_cfg}",
                "--config.distributed.enabled=true",
                f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                "--config.distributed.num_processes=2",
                f"--config.distributed.process_id={i}",
            ],
            cwd=ROOT,
            env=_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "2 x cpu" in outs[0][1] and "grpo 3/3" in outs[0][1]  # messages go to stderr
    ours = ("sft", "grpo", "eval", "wrote", "parameters", "MAE")  # (gloo prints a line itself)
    # process 1 prints nothing and logs warnings only (absl's format: a level letter first)
    info = [line for line in outs[1][1].splitlines() if line.startswith("I")]
    assert not [line for line in outs[1][0].splitlines() + info if any(w in line for w in ours)]

    # the same parameters after the cold start and GRPO
    settings = tiny_settings(one_dir, mode="recone", mesh=(1, -1, 1), steps=3)
    reference = final_params(settings)
    sharded = final_params(tiny_settings(two_dir, mode="recone", mesh=(1, -1, 1), steps=3))
    diffs = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), reference, sharded)
    assert max(jax.tree.leaves(diffs)) <= 1e-6

    # process 0 alone wrote the run files: each metric line once, as with one process
    def shape(workdir):
        return [(line["step"], sorted(line)) for line in read_jsonl(workdir / "metrics.jsonl")]

    assert shape(two_dir) == shape(one_dir)
    assert (two_dir / "results.json").is_file()
    # the HF export gathers the sharded weights: the same tensors as one process wrote
    one_hf = safetensors.numpy.load_file(str(one_dir / "hf_export" / "model.safetensors"))
    two_hf = safetensors.numpy.load_file(str(two_dir / "hf_export" / "model.safetensors"))
    assert sorted(one_hf) == sorted(two_hf) and len(one_hf) > 5
    assert max(float(np.abs(one_hf[k] - two_hf[k]).max()) for k in one_hf) <= 1e-6
