"""benchmarks/update.py: the model-FLOPs count against a plain-Python count and against
XLA's own count of the compiled update, the JSON line, bad input; and
benchmarks/gpu_table.py's tables."""

from __future__ import annotations

import json

import pytest

from reczero_jax.model.model_config import ModelConfig
from tests.benchmarks.scripts import BENCH, load_script


@pytest.fixture(scope="module")
def update():
    return load_script("update")


CONFIG = ModelConfig(
    model_type="qwen2",
    vocab_size=300,
    hidden_size=32,
    intermediate_size=48,
    num_layers=3,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    qkv_bias=True,
    tie_word_embeddings=True,
)


def _reference_flops(c: ModelConfig, b, g, p, t):
    """Multiply-adds counted one product at a time, position by position, x 2 x 3."""
    macs = 0
    sequences = [("prompt", p)] * b + [("answer", t)] * (b * g)
    for kind, length in sequences:
        for i in range(length):
            macs += c.num_layers * c.hidden_size * c.num_heads * c.head_dim  # q
            macs += c.num_layers * 2 * c.hidden_size * c.num_kv_heads * c.head_dim  # k, v
            macs += c.num_layers * c.num_heads * c.head_dim * c.hidden_size  # o
            macs += c.num_layers * 3 * c.hidden_size * c.intermediate_size  # gate, up, down
            keys = i + 1 if kind == "prompt" else p + i + 1
            macs += c.num_layers * c.num_heads * keys * c.head_dim * 2  # q.k and p.v
            if kind == "answer":
                macs += c.hidden_size * c.vocab_size
    return 3 * 2 * macs


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 4), (3, 2, 7, 9)])
def test_update_flops_equal_a_position_by_position_count(update, shape):
    flops = update.update_flops(CONFIG, *shape)
    assert flops["total"] == pytest.approx(_reference_flops(CONFIG, *shape), rel=1e-12)
    assert flops["total"] == pytest.approx(
        flops["linear"] + flops["lm_head"] + flops["attention"], rel=1e-12
    )


def _run(update, capsys, *flags, devices=1):
    assert update.main(["--steps", "1", "--devices", str(devices), *flags]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_xla_counts_what_the_formula_counts(update, capsys):
    """With the layers unrolled and one log-prob chunk (XLA counts a loop's body once),
    the compiled update's FLOPs are the model FLOPs plus the masked attention scores and
    elementwise work (a few %); with remat full it recomputes the forward (about 4/3)."""
    flags = ("--dtype", "float32", "--unroll_layers", "--prompt_len", "64", "--answer_len", "32")
    plain = _run(update, capsys, *flags, "--remat", "none", "--no_logits_remat")
    assert 1.0 <= plain["xla_flops"] / plain["model_flops"] <= 1.1
    remat = _run(update, capsys, *flags, "--remat", "full")
    assert 1.22 <= remat["xla_flops"] / remat["model_flops"] <= 1.4
    assert remat["model_flops"] == plain["model_flops"]


def test_json_line_and_mfu(update, capsys):
    out = _run(update, capsys, "--prompt_len", "32", "--answer_len", "16", "--peak_flops", "1e12")
    assert out["shapes"] == "tiny" and out["step_s"] > 0 and out["compile_s"] > 0
    assert (out["prompts"], out["samples_per_prompt"], out["micro_groups"]) == (2, 4, 2)
    assert out["tokens_per_s"] == pytest.approx((2 * 32 + 8 * 16) / out["step_s"], rel=1e-3)
    rate = out["model_flops"] / out["step_s"]
    assert out["mfu"] == pytest.approx(rate / 1e12, rel=1e-2, abs=1e-4)
    assert out["peak_flops"] == 1e12 and out["loss"] == out["loss"]  # finite, not NaN


def test_phases_and_measured_peak_in_the_compute_dtype(update, capsys):
    flags = ("--dtype", "float32", "--prompt_len", "16", "--answer_len", "8")
    out = _run(update, capsys, *flags, "--phases", "--measure_peak")
    # the gradient runs the forward too, so it cannot take less time than the forward
    assert out["grad_s"] > out["forward_s"] > 0
    ratio = (out["grad_s"] - out["forward_s"]) / out["forward_s"]
    assert out["backward_over_forward"] == pytest.approx(ratio, abs=0.01)
    assert out["measured_matmul_dtype"] == "float32" and out["measured_matmul_flops"] > 0
    rate = out["model_flops"] / out["step_s"]
    assert out["mfu_vs_measured"] == pytest.approx(rate / out["measured_matmul_flops"], rel=1e-2)


def test_sharded_update_equals_unsharded(update, capsys):
    import jax

    if len(jax.devices()) < 8:
        pytest.skip("needs conftest's 8 devices")
    flags = ("--dtype", "float32", "--prompts", "8", "--samples", "2")
    flags += ("--prompt_len", "16", "--answer_len", "8")
    one = _run(update, capsys, *flags)
    eight = _run(update, capsys, *flags, devices=8)
    assert (one["devices"], eight["devices"]) == (1, 8)
    assert eight["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert eight["model_flops"] == one["model_flops"]


def test_bad_micro_batch_is_a_clear_error(update):
    with pytest.raises(SystemExit, match="--micro_groups 3 must divide --prompts 2"):
        update.main(["--steps", "1", "--devices", "1", "--micro_groups", "3"])


def test_gpu_table_rows():
    table = load_script("gpu_table")
    sampler = {
        "device": "NVIDIA H200", "unroll_layers": True, "cache_phases": 4, "rows": 64,
        "batch_prompts": 16,
        "samples_per_prompt": 4, "prompt_len": 128, "new_tokens": 128, "decode_step_ms": 4.1,
        "decode_tokens_per_s": 15554.2, "hbm_bytes_per_s": 7.9e11, "roofline_fraction": 0.165,
    }  # fmt: skip
    upd = {
        "device": "NVIDIA H200", "prompts": 8, "samples_per_prompt": 8, "prompt_len": 1536,
        "answer_len": 512, "remat": "full", "logits_remat": False, "micro_groups": 2,
        "attention": "cudnn",
        "step_s": 1.5, "tokens_per_s": 30000.0, "model_tflops_per_s_per_chip": 290.0,
        "mfu": 0.293, "compile_s": 40.2,
    }  # fmt: skip
    text = table.tables([json.dumps(sampler), "not json", json.dumps(upd)])
    rows = text.splitlines()
    assert (
        "| NVIDIA H200 | unrolled | 4 | 64 (16 x 4) | 128 + 128 | 4.100 | 15,554 | 790 | 16.5% "
        "| - |" in rows
    )
    assert (
        "| NVIDIA H200 | 8 x 8, 1536 + 512 | cudnn | full | no | 4 | 1.500 | 30,000 | 290.0 "
        "| 29.3% | - | 40 |" in rows
    )
    assert table.tables([]) == "(no results)"


def test_gpu_script_collects_each_step_and_prints_the_tables(tmp_path):
    """benchmarks/gpu.sh with a stand-in interpreter that answers each benchmark with a
    JSON line (and the pytest step with a failure): every step runs, each JSON line lands
    in results.jsonl under its step name, and the tables come last."""
    import shutil
    import subprocess
    import sys

    sampler = '{"device": "X", "unroll_layers": false, "rows": 64, "batch_prompts": 16, '
    sampler += '"samples_per_prompt": 4, "prompt_len": 128, "new_tokens": 128, '
    sampler += '"decode_step_ms": 4.5, "decode_tokens_per_s": 14000.0, '
    sampler += '"hbm_bytes_per_s": 7e11, "roofline_fraction": 0.15}'
    upd = '{"device": "X", "prompts": 8, "samples_per_prompt": 8, "prompt_len": 1536, '
    upd += '"answer_len": 512, "remat": "full", "micro_groups": 8, "step_s": 1.6, '
    upd += '"tokens_per_s": 28000.0, "model_tflops_per_s_per_chip": 270.0, "mfu": 0.27, '
    upd += '"compile_s": 50.0}'
    fake = tmp_path / "fakepy"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'case "$*" in\n'
        f"  *benchmarks/sampler.py*) echo compiling; echo '{sampler}';;\n"
        f"  *benchmarks/update.py*) echo compiling; echo '{upd}';;\n"
        '  *"-m pytest"*) echo "1 failed, 2 passed"; exit 1;;\n'
        f'  *) exec {sys.executable} "$@";;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    out = tmp_path / "out"
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(fake), "HOME": str(tmp_path)}
    if shutil.which("timeout") is None:
        pytest.skip("coreutils' timeout is absent")
    result = subprocess.run(
        ["bash", str(BENCH / "gpu.sh"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=BENCH.parent,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = (out / "results.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert steps == [
        "sampler_64",
        "update_full",
        "update_cudnn",
        "update_none",
        "sampler_256",
        "sampler_64_unrolled",
        "sampler_64_one_loop",
    ]
    assert "== gpu_tests: rc 1" in result.stdout and "1 failed, 2 passed" in result.stdout
    assert result.stdout.rstrip().endswith("| 50 |")  # the update table is last
    assert "| X | scan | 1 | 64 (16 x 4) | 128 + 128 | 4.500 |" in result.stdout
    assert (out / "gpu.log").read_text().count("compiling") == 7


def test_gpu_script_is_shellcheck_clean():
    import subprocess

    from tests.tpu.test_scripts import _shellcheck

    result = subprocess.run(
        [_shellcheck(), str(BENCH / "gpu.sh")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout


def test_trace_summary_sums_device_kernels(tmp_path):
    import gzip

    ts = load_script("trace_summary")
    events = [
        {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
        {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/device:GPU:0"}},
        {"ph": "X", "pid": 1, "tid": 1, "name": "python", "ts": 0, "dur": 1000},
        {"ph": "X", "pid": 2, "tid": 7, "name": "nvjet_sm90_tst", "ts": 10, "dur": 30},
        {"ph": "X", "pid": 2, "tid": 7, "name": "nvjet_sm90_tst", "ts": 50, "dur": 30},
        {"ph": "X", "pid": 2, "tid": 7, "name": "memcpy128", "ts": 90, "dur": 20},
        {"ph": "X", "pid": 2, "tid": 7, "name": "loop_add_fusion", "ts": 120, "dur": 20},
    ]
    folder = tmp_path / "plugins" / "profile" / "run"
    folder.mkdir(parents=True)
    with gzip.open(folder / "host.trace.json.gz", "wt") as f:
        json.dump({"traceEvents": events}, f)
    summary = ts.summarize(tmp_path, top=2)
    assert list(summary) == ["/device:GPU:0"]  # the host is left out when a device is there
    gpu = summary["/device:GPU:0"]
    assert (gpu["events"], gpu["busy_ms"], gpu["span_ms"]) == (4, 0.1, 0.13)
    assert gpu["kinds"] == {"matmul": 0.6, "copy": 0.2, "other": 0.2}
    assert gpu["top"] == [("nvjet_sm90_tst", 0.06, 2), ("memcpy128", 0.02, 1)]
    assert "busy 0.1 ms in a 0.1 ms span (matmul 60.0%" in ts.format_summary(summary)
    with pytest.raises(FileNotFoundError, match="no \\*.trace.json.gz"):
        ts.summarize(tmp_path / "nothing")


def test_update_profile_flag_adds_a_summary(update, capsys, tmp_path):
    out = _run(
        update, capsys, "--prompt_len", "16", "--answer_len", "8", "--profile", str(tmp_path)
    )
    assert out["profile"] and all(s["events"] > 0 for s in out["profile"].values())


def test_datasheet_peaks_by_device_kind():
    peaks = load_script("device_peaks")
    assert peaks.datasheet(peaks.PEAK_HBM_BYTES_PER_S, "NVIDIA H200") == 4.8e12
    assert peaks.datasheet(peaks.PEAK_BF16_FLOPS, "TPU v5 lite") == 197e12
    assert peaks.datasheet(peaks.PEAK_BF16_FLOPS, "cpu") is None
    assert peaks.datasheet(peaks.PEAK_BF16_FLOPS, "cpu", override=5.0) == 5.0


def test_real_shapes_come_from_one_place(shared_dir):
    from reczero_jax.tools.lower_config import SHAPES, shape_config

    assert shape_config("qwen2.5-7b") == ModelConfig(**SHAPES["qwen2.5-7b"])
    real = ModelConfig.from_hf_dir(shared_dir / "tokenizers" / "qwen2.5")
    assert shape_config("qwen2.5-1.5b") == real
    assert real.hidden_size == SHAPES["qwen2.5-1.5b"]["hidden_size"]
