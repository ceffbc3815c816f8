"""benchmarks/grpo_vs_peers.py without the peers: the shared inputs (tokenizer round trip,
checkpoint and prompt determinism), the reward in jnp against the peers' Python one, and
this project's GRPO step end to end at the micro shape (JSON keys, tunix and TRL
reported as skipped). The TRL run needs trl (``pip install -r requirements-bench.txt``)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.benchmarks.scripts import load_script

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "grpo_vs_peers.py"


@pytest.fixture(scope="module")
def bench():
    return load_script("grpo_vs_peers")


def test_tokenizer_round_trips_every_id_and_has_4096_entries(bench, tmp_path):
    tokenizer = bench.load_tokenizer(bench.save_tokenizer(tmp_path / "tok"))
    assert len(tokenizer) == bench.MODEL["vocab_size"] == 4096
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (bench.PAD_ID, bench.EOS_ID)
    assert tokenizer.bos_token_id is None and not getattr(tokenizer, "chat_template", None)
    every = list(range(4096))
    assert (
        tokenizer(bench.ids_to_text(tokenizer, every), add_special_tokens=False)["input_ids"]
        == every
    )
    rng = np.random.default_rng(1)
    for _ in range(5):
        ids = rng.integers(0, 4096, 50).tolist()
        text = bench.ids_to_text(tokenizer, ids)
        assert tokenizer.encode(text) == ids  # also with the default special-token flag


def test_checkpoint_and_prompts_are_deterministic(bench, tmp_path):
    from safetensors.numpy import load_file

    a = bench.make_checkpoint(tmp_path / "a", seed=0)
    b = bench.make_checkpoint(tmp_path / "b", seed=0)
    c = bench.make_checkpoint(tmp_path / "c", seed=1)
    wa, wb, wc = (load_file(d / "model.safetensors") for d in (a, b, c))
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert any(not np.array_equal(wa[k], wc[k]) for k in wa)
    config = json.loads((a / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]) == (
        256, 4, 688
    )  # fmt: skip
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (4, 2)
    assert config["tie_word_embeddings"] and config["vocab_size"] == 4096
    shape = bench.SHAPES["reczero"]
    prompts = bench.make_prompts(shape, 0)
    assert prompts == bench.make_prompts(shape, 0) != bench.make_prompts(shape, 1)
    assert np.array(prompts).shape == (4, 1024) and min(min(p) for p in prompts) >= 3
    assert bench.SHAPES["short"] == dict(prompts=4, prompt_len=30, generations=4, new_tokens=64)


def test_jnp_reward_equals_the_peers_python_reward(bench):
    sys.path.insert(0, str(bench.PEERS))
    import peer_common
    import run_ours

    spec = bench.reward_spec(dict(new_tokens=16))
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 4096, (3, 4, 16)).astype(np.int32)
    tokens[..., :4] = rng.choice([0, 1, 2, 5, 9, 13], (3, 4, 4))  # specials and hits
    full = np.full((3, 4), 16, np.int32)
    got = np.asarray(run_ours.make_reward_fn(spec)(tokens, full, np.zeros((3, 4))).reward)
    want = [[peer_common.reward_of_ids(row, spec) for row in group] for group in tokens]
    np.testing.assert_array_equal(got, np.array(want, np.float32))
    assert peer_common.reward_of_ids([5, 9, 1, 0, 6], dict(spec, target=2)) == 0.0


def test_step_times_skip_warmup_and_take_median_and_min():
    sys.path.insert(0, str(ROOT / "benchmarks" / "peers"))
    import peer_common

    times = peer_common.StepTimes()
    for seconds in (9.0, 1.0, 3.0, 2.0):
        times.begin()
        times.add("rollout", seconds)
        times.end()
    summary = times.summary(warmup=1)
    assert summary["steps_timed"] == 3 and summary["rollout_s"] == 2.0
    assert summary["rollout_min_s"] == 1.0 and len(summary["per_step"]) == 4
    assert summary["first_step_s"] >= 0
    assert len(times.faults) == 4 and summary["minor_faults_per_step"] >= 0


def test_a_step_counts_the_page_faults_of_fresh_memory():
    sys.path.insert(0, str(ROOT / "benchmarks" / "peers"))
    import peer_common

    times = peer_common.StepTimes()
    times.begin()
    # 64 MiB, above glibc's largest mmap threshold (32 MiB): a fresh mapping, whose first
    # touch faults (in 2 MiB pages where numpy gets huge pages, else 4 KiB)
    fresh = np.ones(2**26, np.uint8)
    times.end()
    times.begin()
    fresh[:] = 2  # the same pages again: already mapped
    times.end()
    assert times.faults[0] >= 32 and times.faults[1] < times.faults[0]


def test_the_peers_get_the_huge_pages_tunable_only_when_asked(bench, monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    for system in ("trl", "tunix"):
        assert bench.child_env(system)["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"
        assert bench.child_env(system, peers_huge_pages=True)["GLIBC_TUNABLES"] == (
            "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
        )
    # ours sets it for itself, as python -m reczero_jax.main does
    assert bench.child_env("ours", peers_huge_pages=True)["GLIBC_TUNABLES"] == (
        "glibc.malloc.arena_max=2"
    )


def _run(*args: str, timeout: float = 600) -> dict:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--shape", "micro", "--steps", "1", "--warmup", "1", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_our_step_at_the_micro_shape_prints_the_json_line():
    result = _run("--systems", "ours")
    for key in (
        "ours_step_s", "trl_step_s", "tunix_step_s", "speedup_vs_trl", "speedup_vs_tunix",
        "ours_rollout_tokens_per_s", "shape", "peak_rss_mb", "versions", "parity_max_abs_diff",
        "ours_rollout_s", "ours_update_s", "ours_generate_s", "ours_peak_rss_mb",
    ):  # fmt: skip
        assert key in result, key
    assert result["shape"] == "micro" and result["ours_step_s"] > 0
    assert result["ours_rollout_s"] > 0 and result["ours_update_s"] > 0
    assert result["ours_rollout_tokens_per_s"] > 0 and result["ours_peak_rss_mb"] > 0
    assert result["parity_max_abs_diff"]["ours"] <= 1e-4
    assert result["trl_step_s"] is None and result["tunix_step_s"] is None
    assert result["speedup_vs_trl"] is None and result["speedup_vs_tunix"] is None
    assert set(result["skipped"]) == {"trl", "tunix"}
    settings = dict(result["ours_settings"])
    assert settings.pop("huge_pages").startswith(("on", "off", "as set"))
    assert settings == {
        "model.remat": "none", "model.logits_remat": False, "model.scan_layers": False,
    }  # fmt: skip
    assert result["ours_sampler"] == {"unroll_layers": True, "cache_phases": 4}  # CPU defaults
    assert result["minor_faults_per_step"]["ours"] >= 0
    assert set(result["glibc_tunables"]) == {"ours", "trl", "tunix"}


def test_tunix_without_its_python_is_skipped_with_the_venv_command(bench):
    reason = bench.skip_reason("tunix", None)
    assert "--tunix-python" in reason and "google-tunix==0.1.7" in reason
    assert "does not exist" in bench.skip_reason("tunix", "/nonexistent/python")
    assert bench.skip_reason("ours", None) is None


@pytest.mark.slow
def test_trl_step_at_the_micro_shape():
    pytest.importorskip("trl")
    result = _run("--systems", "trl")
    assert result["trl_step_s"] > 0 and result["trl_rollout_s"] > 0
    assert result["parity_max_abs_diff"]["trl"] <= 1e-4
    assert result["versions"]["trl"]["trl"] == "1.16.0"
    assert result["ours_step_s"] is None and result["speedup_vs_trl"] is None


def test_markdown_rows_of_a_summary(bench):
    summary = {"shape": "reczero", "peak_rss_mb": {"ours": 3110.4, "trl": 4468.0},
               "parity_max_abs_diff": {"ours": 1.6e-06, "trl": 0.0}}  # fmt: skip
    for s, step in (("ours", 2.7691), ("trl", 20.8612), ("tunix", None)):
        summary.update({f"{s}_step_s": step, f"{s}_step_min_s": 2.7031, f"{s}_rollout_s": 0.9894,
                        f"{s}_update_s": 1.7943, f"{s}_first_step_s": 12.21})  # fmt: skip
    rows = bench.markdown_rows(summary)
    assert rows == [
        "| RecZero | ours | 2.769 (2.703) | 0.989 | 1.794 | 12.2 | 3.1 GB | 1.6e-06 |",
        "| RecZero | trl | 20.861 (2.703) | 0.989 | 1.794 | 12.2 | 4.5 GB | 0.0e+00 |",
    ]  # tunix did not run: no row


def test_rounds_rotate_the_order_and_pool_every_timed_step(bench):
    assert [bench.round_order(r)[0] for r in range(4)] == ["ours", "trl", "tunix", "ours"]
    assert all(sorted(bench.round_order(r)) == sorted(bench.SYSTEMS) for r in range(3))

    def run(steps, peak, parity, load):
        per_step = [{"step": x, "update": x / 2} for x in steps]
        return {"per_step": per_step, "step_s": float(np.median(steps[1:])), "exit_code": 0,
                "peak_rss_child_mb": peak, "parity_max_abs_diff": parity,
                "loadavg_1min": load, "wall_s": 3.0, "rollout_tokens": 64}  # fmt: skip

    # warmup 1: round 1 times 0.2, 0.3, 0.25; round 2 (a slow phase) 0.5, 0.6, 0.4
    pooled = bench.pool_rounds(
        [run([9.0, 0.2, 0.3, 0.25], 100.0, 1e-6, [1.0, 1.1]),
         run([8.0, 0.5, 0.6, 0.4], 120.0, 2e-6, [1.1, 1.2])], warmup=1
    )  # fmt: skip
    assert pooled["step_s"] == pytest.approx(0.35)  # median of the 6 timed steps
    assert pooled["step_min_s"] == 0.2 and pooled["update_s"] == pytest.approx(0.175)
    assert pooled["round_step_s"] == [0.25, 0.5] and pooled["steps_timed"] == 6
    assert pooled["peak_rss_child_mb"] == 120.0 and pooled["parity_max_abs_diff"] == 2e-6
    assert pooled["loadavg_1min"] == [[1.0, 1.1], [1.1, 1.2]] and pooled["wall_s"] == 6.0

    theirs = bench.pool_rounds([run([9.0, 0.5, 0.5, 0.5], 1, 0, [0, 0]),
                                run([9.0, 0.6, 0.6, 0.6], 1, 0, [0, 0])], warmup=1)  # fmt: skip
    shape = {"name": "short", "prompts": 4, "prompt_len": 30, "generations": 4, "new_tokens": 64}
    spec = {"shape": shape, "steps": 3, "warmup": 1, "threads": 2, "rounds": 2}
    summary = bench.summarize(spec, {"ours": pooled, "tunix": theirs}, {"trl": "absent"})
    assert summary["speedup_vs_tunix"] == round(0.55 / 0.35, 2)
    assert summary["round_speedups"] == {"tunix": [2.0, 1.2]}
    assert summary["speedup_vs_trl"] is None and summary["rounds"] == 2
