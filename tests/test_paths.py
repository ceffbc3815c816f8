"""``gs://`` wherever a local path works: the helpers of ``reczero_jax.paths``, each writer
and reader on a fake bucket, and whole training runs (and their resume) with a ``gs://``
workdir. The fake (``tests/fixtures/fake_gcs.py``) keeps ``gs://<bucket>/<key>`` under a
local root and refuses to append, like an object store."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tempfile

import jax
import numpy as np
import pytest

from reczero_jax import paths
from reczero_jax.checkpointing import checkpoint_steps
from reczero_jax.config_parsing import ConfigError
from reczero_jax.observe import MetricWriter, read_jsonl, read_scalars
from tests.fixtures.fake_gcs import install_fake_gcs

BUCKET = "gs://fake-bucket"
REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def gcs(tmp_path, monkeypatch):
    """The fake gs:// (its files under ``gcs.root``), run from an empty working directory
    so that a ``gs:`` folder made by a stray ``pathlib.Path("gs://...")`` shows up."""
    fake = install_fake_gcs(tmp_path / "fake_gcs", monkeypatch)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return fake


def stray_gs_folders(*roots) -> list[str]:
    """Local folders named like a mangled URI (``gs:``) directly under ``roots``."""
    return [str(p) for r in roots if os.path.isdir(r) for p in pathlib.Path(r).glob("gs:*")]


def no_stray(tmp_path) -> None:
    found = stray_gs_folders(
        tmp_path, tmp_path / "cwd", os.getcwd(), REPO, tempfile.gettempdir(), "/tmp"
    )
    # pathlib.Path(epath.Path("gs://b/x")) is the local /gs/b/x
    found += [p for p in ("/gs/fake-bucket",) if os.path.exists(p)]
    assert not found, f"local folders made from gs:// paths: {found}"


# ---------------------------------------------------------------------------- the fake
def test_the_fake_bucket_maps_to_its_root_and_refuses_append(gcs, tmp_path):
    f = paths.as_path(f"{BUCKET}/a/b.txt")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("hi")
    assert (gcs.root / "fake-bucket" / "a" / "b.txt").read_text() == "hi"
    assert [p.name for p in paths.as_path(f"{BUCKET}/a").glob("*.txt")] == ["b.txt"]
    assert str(next(paths.as_path(f"{BUCKET}/a").iterdir())) == f"{BUCKET}/a/b.txt"
    with pytest.raises(NotImplementedError, match="no append"):
        f.open("a")
    no_stray(tmp_path)


# ---------------------------------------------------------------------------- helpers
def test_as_path_is_remote_and_absolute(gcs):
    assert paths.is_remote("gs://b/x") and paths.is_remote(paths.as_path("gs://b/x"))
    assert not paths.is_remote("/tmp/x") and not paths.is_remote("rel/x")
    assert not paths.is_remote("gs:/b/x")  # already mangled: a local path
    assert str(paths.as_path("gs://b/run") / "checkpoints") == "gs://b/run/checkpoints"
    assert str(paths.absolute("gs://b/run")) == "gs://b/run"  # epath's absolute() is not
    assert paths.absolute("rel") == pathlib.Path.cwd() / "rel"
    assert paths.as_path("/tmp/x") == pathlib.Path("/tmp/x")


def test_local_copy(gcs, tmp_path):
    local = tmp_path / "here"
    assert paths.local_copy(local) == local and not local.exists()  # local: itself, no copy
    root = paths.as_path(f"{BUCKET}/hf")
    (root / "sub").mkdir(parents=True)
    for name, data in [("config.json", b"{}"), ("w.safetensors", b"123"), ("sub/x.txt", b"x")]:
        (root / name).write_bytes(data)
    whole = paths.local_copy(root)
    assert isinstance(whole, pathlib.Path) and not paths.is_remote(whole)
    assert (whole / "sub" / "x.txt").read_bytes() == b"x"
    assert (whole / "w.safetensors").read_bytes() == b"123"
    assert paths.local_copy(root) == whole  # once per process
    small = paths.local_copy(f"{BUCKET}/hf", ("*.json", "*.txt"))
    assert sorted(p.name for p in small.iterdir()) == ["config.json"]  # top level, matching
    one = paths.local_copy(f"{BUCKET}/hf/config.json")
    assert one.name == "config.json" and one.read_bytes() == b"{}"
    with pytest.raises(FileNotFoundError, match="gs://fake-bucket/nope does not exist"):
        paths.local_copy(f"{BUCKET}/nope")
    no_stray(tmp_path)


def test_upload_and_writing_to(gcs, tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"a")
    (src / "d" / "b.bin").write_bytes(b"b")
    paths.upload(src, f"{BUCKET}/up")
    stored = gcs.root / "fake-bucket" / "up"
    assert (stored / "a.bin").read_bytes() == b"a" and (stored / "d" / "b.bin").read_bytes() == b"b"

    with paths.writing_to(f"{BUCKET}/out") as local:
        assert not paths.is_remote(local)
        (local / "f.txt").write_text("done")
    assert (gcs.root / "fake-bucket" / "out" / "f.txt").read_text() == "done"
    assert not local.exists()  # the staging folder is removed
    with pytest.raises(RuntimeError), paths.writing_to(f"{BUCKET}/failed") as local:
        (local / "half.txt").write_text("x")
        raise RuntimeError
    assert not (gcs.root / "fake-bucket" / "failed").exists()  # nothing uploaded
    with paths.writing_to(tmp_path / "plain") as local:  # local: the folder itself
        assert local == tmp_path / "plain"
    no_stray(tmp_path)


@pytest.mark.parametrize("remote", [False, True])
def test_append_file(gcs, tmp_path, remote):
    path = f"{BUCKET}/log.bin" if remote else tmp_path / "log.bin"
    stored = gcs.root / "fake-bucket" / "log.bin" if remote else tmp_path / "log.bin"
    f = paths.AppendFile(path)
    f.write(b"one\n")
    f.flush()
    assert stored.read_bytes() == b"one\n"
    f.write(b"two\n")
    f.close()
    f.close()
    again = paths.AppendFile(path)  # a resumed writer continues the file
    again.write(b"three\n")
    again.close()
    assert stored.read_bytes() == b"one\ntwo\nthree\n"
    with pytest.raises(FileExistsError):
        paths.AppendFile(path, exclusive=True)
    with pytest.raises(ValueError, match="closed"):
        again.write(b"x")


# ---------------------------------------------------------------------------- writers and readers
def test_metric_writer_on_a_bucket(gcs, tmp_path):
    workdir = f"{BUCKET}/w"
    stored = gcs.root / "fake-bucket" / "w"
    with MetricWriter(workdir, enabled=True, remote_flush_s=0) as w:
        w.write(1, {"x": 1.0})
        assert read_jsonl(stored / "metrics.jsonl")[0]["x"] == 1.0  # flushed at once
        w.write(2, {"x": 2.0, "y": float("nan")})
    with MetricWriter(workdir, enabled=True, remote_flush_s=3600) as w:  # a resumed run
        w.write(2, {"x": 2.5})
        assert len(read_jsonl(stored / "metrics.jsonl")) == 2  # not uploaded yet
    records = read_jsonl(f"{workdir}/metrics.jsonl")
    assert [(r["step"], r["x"]) for r in records] == [(1, 1.0), (2, 2.0), (2, 2.5)]
    assert records[1]["y"] is None
    assert len(list((stored / "tensorboard").iterdir())) == 2  # one event file per writer
    assert read_scalars(f"{workdir}/tensorboard") == {"x": [(1, 1.0), (2, 2.0), (2, 2.5)]}
    assert read_scalars(stored / "tensorboard") == read_scalars(f"{workdir}/tensorboard")
    no_stray(tmp_path)


def test_readers_and_traces_rule_read_from_a_bucket(gcs, tmp_path):
    from reczero_jax.data.readers import DataError, read_source
    from reczero_jax.settings import default_config, load_settings
    from tests.data import sample_files

    (tmp_path / "src").mkdir()
    path, meta = sample_files.write_amazon(tmp_path / "src", "amazon2018")
    paths.upload(tmp_path / "src", f"{BUCKET}/data")
    local = read_source("amazon2018", str(path), str(meta))
    remote = read_source("amazon2018", f"{BUCKET}/data/{path.name}", f"{BUCKET}/data/{meta.name}")
    for col in ("user", "item", "rating", "timestamp", "review"):
        np.testing.assert_array_equal(getattr(local.ratings, col), getattr(remote.ratings, col))
    assert local.report.skipped == remote.report.skipped
    with pytest.raises(DataError, match="gs://fake-bucket/data/nope.json.gz does not exist"):
        read_source("amazon2018", f"{BUCKET}/data/nope.json.gz")

    traces = paths.as_path(f"{BUCKET}/traces.jsonl")
    traces.write_text('{"prompt": "p", "response": "r"}\n')
    c = default_config()
    c.mode, c.workdir = "sft", f"{BUCKET}/run"
    c.data.prompt.max_prompt_tokens = 64
    c.sft.traces, c.sft.traces_path = "file", str(traces)
    assert load_settings(c).sft.traces_path == f"{BUCKET}/traces.jsonl"
    c.sft.traces_path = f"{BUCKET}/missing.jsonl"
    with pytest.raises(ConfigError, match="sft.traces_path"):
        load_settings(c)
    no_stray(tmp_path)


def test_hf_export_to_and_load_from_a_bucket(gcs, tmp_path):
    from reczero_jax.hf.checkpoint import export_hf, load_hf_params
    from reczero_jax.hf.tiny import make_tiny_checkpoint
    from reczero_jax.model.model_config import ModelConfig

    local = make_tiny_checkpoint(tmp_path / "tiny")
    config = ModelConfig.from_hf_dir(local)
    params = load_hf_params(local, config)
    out = export_hf(params, config, f"{BUCKET}/export", tokenizer_dir=local)
    assert str(out) == f"{BUCKET}/export"
    stored = gcs.root / "fake-bucket" / "export"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in stored.iterdir()
    }
    again = load_hf_params(f"{BUCKET}/export", config)
    jax.tree.map(np.testing.assert_array_equal, params, again)
    no_stray(tmp_path)


# ---------------------------------------------------------------------------- whole runs
def test_training_run_and_resume_with_a_gs_workdir(gcs, tmp_path, caplog):
    """RecOne (SFT, eval, GRPO, eval) stopped after 2 GRPO steps and relaunched with 3, all
    with ``workdir=gs://fake-bucket/run``: every output lies in the bucket, nothing local
    is made from the URI, and the relaunch resumes from the bucket's checkpoints."""
    from reczero_jax.rl.run import run
    from tests.rl.test_training import tiny_settings

    workdir = f"{BUCKET}/run"
    stored = gcs.root / "fake-bucket" / "run"
    first = run(tiny_settings(workdir, mode="recone", steps=2))
    assert "sft_history" in first and first["grpo_history"][-1]["step"] == 2
    assert json.loads((stored / "results.json").read_text())["grpo"] == first["grpo"]
    lines_first = (stored / "metrics.jsonl").read_text().splitlines()
    assert {json.loads(x)["step"] for x in lines_first} == {0, 2}  # evaluations log step 0
    assert (stored / "tokenizer" / "tokenizer.json").is_file()
    for phase, last in (("sft", 2), ("grpo", 2)):
        assert checkpoint_steps(f"{workdir}/checkpoints/{phase}")[-1] == last
        assert (stored / "checkpoints" / phase / str(last) / "commit_success.txt").is_file()
    no_stray(tmp_path)
    caplog.clear()

    settings = tiny_settings(workdir, mode="recone", steps=3)
    export = dataclasses.replace(settings.checkpoint, export_hf=True)
    second = run(dataclasses.replace(settings, checkpoint=export))
    printed = caplog.text
    assert "sft: complete" in printed and "resuming step 2" in printed
    log_txt = (stored / "log.txt").read_text()  # both runs' messages, with timestamps
    assert log_txt.count("recone: ") >= 2 and "sft: complete" in log_txt
    assert json.loads((stored / "config.json").read_text())["grpo"]["steps"] == 3
    assert "sft_history" not in second and second["grpo_history"][-1]["step"] == 3
    assert checkpoint_steps(f"{workdir}/checkpoints/grpo")[-1] == 3
    assert json.loads((stored / "results.json").read_text())["grpo"] == second["grpo"]
    lines = (stored / "metrics.jsonl").read_text().splitlines()
    assert lines[: len(lines_first)] == lines_first and len(lines) > len(lines_first)
    events = sorted((stored / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 2  # one per run
    assert read_scalars(f"{workdir}/tensorboard")["final/grpo_mae"][-1][1] == pytest.approx(
        second["grpo"]["mae"]
    )
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in (stored / "hf_export").iterdir()
    }
    assert {f"{workdir}/results.json", f"{workdir}/metrics.jsonl"} <= set(gcs.written)
    assert sorted(os.listdir(tmp_path / "cwd")) == []
    no_stray(tmp_path)
