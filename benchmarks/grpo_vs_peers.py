"""One GRPO step in this project against Hugging Face TRL's GRPOTrainer and google-tunix's
GRPOLearner, on the same tiny random Qwen2 checkpoint and the same prompt token ids.

    pip install -r requirements-bench.txt                      # trl 1.16.0 beside our pins
    python3 -m venv /work/tunix-venv && /work/tunix-venv/bin/pip install \\
        google-tunix==0.1.7 jax==0.10.2 jaxlib==0.10.2 flax==0.12.8 optax==0.2.8 numpy==2.4.6
    python benchmarks/grpo_vs_peers.py --tunix-python /work/tunix-venv/bin/python
    python benchmarks/grpo_vs_peers.py --shape short --rounds 5 \\
        --tunix-python /work/tunix-venv/bin/python

tunix gets its own venv because it needs ``safetensors<0.8`` (this project pins 0.8.0 for
transformers 5.24); the command above pulls no torch (it brings jax 0.10.2, flax 0.12.8,
transformers 5.12.1 and safetensors 0.7.0, about 1.6 GB). Without ``--tunix-python``,
tunix is reported as skipped; without trl installed, TRL is.

What is measured: one GRPO step = rollout (G answers to each of B prompts, temperature 1,
no top-k / top-p, every answer forced to its full T tokens) + reward + group advantages +
ONE optimizer update (AdamW, lr 1e-6, no weight decay, clip 1.0, beta 0, PPO clip 0.2,
per-sequence token-mean loss), float32, on CPU. Shapes (``--shape``):

    reczero (default)  4 prompts of 1,024 tokens, G = 8, 128 new tokens (RecZero's shape)
    short              4 prompts of 30 tokens, G = 4, 64 new tokens
    micro              2 prompts of 16 tokens, G = 2, 8 new tokens (tests)

The model: a random Qwen2 (hidden 256, 4 layers, 4 heads of 64, 2 KV heads, intermediate
688, vocab 4,096, tied embeddings; about 4M parameters) made by transformers from a fixed
seed and saved with ``save_pretrained`` into a temporary folder, and beside it a word-level
tokenizer of exactly 4,096 entries (``<pad>`` = 0, EOS ``<|im_end|>`` = 1, ``<unk>`` = 2,
then ``w3`` .. ``w4095``; no BOS, no chat template) for which ids -> text -> ids is exact
(checked for every prompt). The prompts are random ids in [3, 4096); TRL and tunix get
their text, this project the ids.

Each system runs in its own subprocess, one after another (``benchmarks/peers/run_*.py``):

* ours: the real builder (``engine.build_engine``) and the body of ``rl.grpo.run_grpo``'s
  loop: ``collect_groups`` / ``rollout`` (the group sampler: each prompt prefilled once
  for its G answers; with the project's defaults on CPU its decode step is unrolled over
  per-layer weights and caches and runs in four loops over a growing generated cache,
  ``ours_sampler`` in the JSON), the reward in jnp on the token ids, the jitted ``rl.step``
  train step with the GRPO objective (each prompt processed once per group; its layers
  unrolled, nothing recomputed: the settings that differ from the project's defaults are
  in the JSON's ``ours_settings``). EOS disabled. Its
  process starts as ``python -m reczero_jax.main`` does, restarted once with glibc's
  malloc on transparent huge pages (``reczero_jax.huge_pages``); ``--peers-huge-pages``
  gives TRL and tunix the same glibc tunable (by default they run as installed). The JSON
  records each process's ``glibc_tunables`` and ``minor_faults_per_step``.
* TRL 1.16.0 ``GRPOTrainer`` with the settings of ``../shared/docs/peers.md``: use_cpu,
  no bf16 / fp16, no gradient checkpointing, loss_type 'grpo', B x G completions per
  device batch, ``generation_kwargs={'min_new_tokens': T}`` (EOS can never end an answer),
  torch threads = CPU count; the reward reads ``completion_ids``.
* tunix 0.1.7 ``GRPOLearner`` (vanilla rollout, one mesh for actor and rollout,
  ``max_prompt_length`` = P, ``kv_cache_size`` = P + T, EOS id = 4096, an id that is never
  sampled); its reward gets text, re-tokenized to the same ids.

All three compute the same reward, ``-|#{answer ids >= 3 with id % 4 == 1} - T / 4|``
(ours checks its jnp reward against the Python one on the first rollout). At start-up
every system computes the logits of the shared weights on a probe of the prompts and
compares them with transformers' (max |diff| <= 1e-4 or the benchmark stops). The first
``--warmup`` steps (compilation) are not timed; then ``--steps`` steps each, and the
median and min are reported, with the rollout (generation + reward + advantages), the
generation alone and the update where the system lets them be timed, and the peak RSS of
each subprocess. The LAST line printed is one JSON object.

``--rounds R`` runs every system R times, the order rotating each round (ours, TRL,
tunix; then TRL, tunix, ours; ...), and pools the timed steps of all rounds into each
system's median and min; ``round_speedups`` gives every round's ratio on its own. A shared
machine has slow phases of tens of seconds (here a decode step then takes twice as long):
in a single round one system can be caught in one and the others not.

Run it on an otherwise idle machine: torch's OpenMP threads spin-wait, and with other
work on the same cores TRL's generation slowed from 0.3 s to 9 s per step here (at
``--shape short``), and our update at the default shape from 5.5 s to 12 s.
``loadavg_1min`` in the JSON gives the load before and after each system;
``--torch-threads`` changes TRL's thread count (default: the CPU count, as
``../shared/docs/peers.md`` measured it).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / "peers"
sys.path.insert(0, str(PEERS))

import peer_common  # noqa: E402  (the workers' shared module: standard library and numpy)

SHAPES = {
    "reczero": dict(prompts=4, prompt_len=1024, generations=8, new_tokens=128),
    "short": dict(prompts=4, prompt_len=30, generations=4, new_tokens=64),
    "micro": dict(prompts=2, prompt_len=16, generations=2, new_tokens=8),
}
MODEL = dict(
    vocab_size=4096,
    hidden_size=256,
    intermediate_size=688,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    tie_word_embeddings=True,
    max_position_embeddings=2048,
)
PAD_ID, EOS_ID, UNK_ID, FIRST_WORD = 0, 1, 2, 3
SPECIAL = {"<pad>": PAD_ID, "<|im_end|>": EOS_ID, "<unk>": UNK_ID}
SYSTEMS = ("ours", "trl", "tunix")
WORKERS = {"ours": "run_ours.py", "trl": "run_trl.py", "tunix": "run_tunix.py"}
PARITY_ROWS, PARITY_LEN = 3, 48
LEARNING_RATE, GRAD_CLIP, EPSILON = 1e-6, 1.0, 0.2
TUNIX_VENV_COMMAND = (
    "python3 -m venv /work/tunix-venv && /work/tunix-venv/bin/pip install google-tunix==0.1.7 "
    "jax==0.10.2 jaxlib==0.10.2 flax==0.12.8 optax==0.2.8 numpy==2.4.6"
)


# ------------------------------------------------------------------- shared inputs
def build_tokenizer():
    """A word-level tokenizer of exactly 4,096 entries whose ids -> text -> ids is exact:
    the special ids 0-2, then ``w<id>`` for every other id, split on whitespace, decoded
    by joining with one space. No BOS, no post-processor, no chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = dict(SPECIAL)
    vocab.update({f"w{i}": i for i in range(FIRST_WORD, MODEL["vocab_size"])})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<|im_end|>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )


def ids_to_text(tokenizer, ids) -> str:
    """The text of ``ids``; raises unless the tokenizer gives back exactly ``ids``."""
    ids = [int(x) for x in ids]
    text = tokenizer.decode(ids, skip_special_tokens=False)
    back = tokenizer(text, add_special_tokens=False)["input_ids"]
    if back != ids:
        raise RuntimeError(f"the tokenizer does not round-trip {ids[:8]}... -> {back[:8]}...")
    return text


def make_checkpoint(out_dir: str | os.PathLike, seed: int = 0) -> pathlib.Path:
    """The tiny random Qwen2 (transformers, float32, ``torch.manual_seed(seed)``), saved
    with ``save_pretrained`` into ``out_dir``."""
    import torch
    import transformers

    out = pathlib.Path(out_dir)
    config = transformers.Qwen2Config(
        **MODEL, pad_token_id=PAD_ID, eos_token_id=EOS_ID, bos_token_id=None
    )
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    return out


def save_tokenizer(out_dir: str | os.PathLike) -> pathlib.Path:
    """The tokenizer in its own folder: transformers' ``AutoTokenizer`` on the model folder
    would build a Qwen2 BPE tokenizer from ``config.json``'s model type instead."""
    build_tokenizer().save_pretrained(out_dir)
    return pathlib.Path(out_dir)


def load_tokenizer(tokenizer_dir):
    """The saved tokenizer as every system loads it (``AutoTokenizer``, local files)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)


def make_prompts(shape: dict, seed: int = 0) -> list[list[int]]:
    """B prompts of exactly P token ids drawn from the word ids [3, 4096)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(FIRST_WORD, MODEL["vocab_size"], (shape["prompts"], shape["prompt_len"]))
    return ids.tolist()


def reward_spec(shape: dict) -> dict:
    return dict(first_word=FIRST_WORD, modulus=4, residue=1, target=shape["new_tokens"] // 4)


def reference_logits(model_dir, ids: np.ndarray) -> np.ndarray:
    """float32 [R, L, V] logits of transformers' model of ``model_dir`` (full mask)."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids)).logits.float().numpy()


def prepare(
    workdir: pathlib.Path, shape_name: str, steps: int, warmup: int, seed: int, threads: int = 0
) -> dict:
    """Writes the checkpoint, the prompts and the parity probe into ``workdir``; returns
    the spec every worker reads (also written to ``workdir/spec.json``)."""
    shape = dict(SHAPES[shape_name], name=shape_name)
    model_dir = make_checkpoint(workdir / "model", seed)
    tokenizer_dir = save_tokenizer(workdir / "tokenizer")
    tokenizer = load_tokenizer(tokenizer_dir)
    prompts = make_prompts(shape, seed)
    texts = [ids_to_text(tokenizer, p) for p in prompts]
    probe = np.asarray(prompts, np.int64)[:PARITY_ROWS, :PARITY_LEN]
    np.save(workdir / "parity_ids.npy", probe)
    np.save(workdir / "parity_reference.npy", reference_logits(model_dir, probe))
    spec = {
        "shape": shape,
        "steps": steps,
        "warmup": warmup,
        "seed": seed,
        "model_dir": str(model_dir),
        "tokenizer_dir": str(tokenizer_dir),
        "model": MODEL,
        "pad_id": PAD_ID,
        "eos_id": EOS_ID,
        "prompt_ids": prompts,
        "prompt_texts": texts,
        "reward": reward_spec(shape),
        "learning_rate": LEARNING_RATE,
        "grad_clip": GRAD_CLIP,
        "epsilon": EPSILON,
        "threads": threads or os.cpu_count() or 1,  # torch threads (TRL)
        "parity": {
            "ids": str(workdir / "parity_ids.npy"),
            "reference": str(workdir / "parity_reference.npy"),
        },
    }
    (workdir / "spec.json").write_text(json.dumps(spec))
    return spec


# ------------------------------------------------------------------------- workers
def child_env(system: str, peers_huge_pages: bool = False) -> dict:
    """The parent's environment, offline, on the machine's real devices (without a
    ``--xla_force_host_platform_device_count`` that a test run may have set). With
    ``peers_huge_pages``, TRL and tunix also get the glibc tunable that ours sets for
    itself (``reczero_jax.huge_pages``)."""
    from reczero_jax.huge_pages import with_tunable

    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "force_host_platform" not in f]
    env["XLA_FLAGS"] = " ".join(flags)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    if system == "ours":  # the project importable without an install
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    else:
        env.pop("PYTHONPATH", None)
        if peers_huge_pages:
            env["GLIBC_TUNABLES"] = with_tunable(env.get("GLIBC_TUNABLES", ""))
    return env


def run_worker(
    system: str,
    python: str,
    workdir: pathlib.Path,
    timeout: float,
    tag: str = "",
    peers_huge_pages: bool = False,
) -> dict:
    """Runs one worker to completion; returns its JSON plus ``exit_code``, ``wall_s``,
    ``peak_rss_child_mb`` (``wait4``'s ru_maxrss of that child alone) and ``log``. Its
    files are ``workdir/{system}{tag}.json`` and ``.log``."""
    out = workdir / f"{system}{tag}.json"
    log = workdir / f"{system}{tag}.log"
    cmd = [python, str(PEERS / WORKERS[system]), "--spec", str(workdir / "spec.json")]
    cmd += ["--out", str(out)]
    start, load = time.perf_counter(), os.getloadavg()[0]
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            cmd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=child_env(system, peers_huge_pages),
            cwd=ROOT,
        )
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = json.loads(out.read_text()) if out.is_file() else {}
    result.update(
        exit_code=proc.returncode,
        wall_s=round(time.perf_counter() - start, 1),
        peak_rss_child_mb=round(usage.ru_maxrss / 1024, 1),  # Linux: KB
        loadavg_1min=[round(load, 2), round(os.getloadavg()[0], 2)],  # before, after
        log=str(log),
    )
    return result


def round_order(r: int) -> tuple[str, ...]:
    """The systems' order in round ``r``: SYSTEMS rotated by r, so that each system runs
    first, second and last in turn."""
    k = r % len(SYSTEMS)
    return SYSTEMS[k:] + SYSTEMS[:k]


def pool_rounds(runs: list[dict], warmup: int) -> dict:
    """One system's result over its rounds (each a worker's JSON from :func:`run_worker`):
    the median and min of every phase over the timed steps of ALL rounds, each round's
    own median step (``round_step_s``), the first round's first step, the largest peak RSS
    and parity difference, and the load average around each round."""
    timed = [step for r in runs for step in r["per_step"][warmup:]]
    out = {**runs[0], **peer_common.phase_stats(timed)}
    out["steps_timed"] = len(timed)
    out["per_step"] = [step for r in runs for step in r["per_step"]]
    out["round_step_s"] = [r.get("step_s") for r in runs]
    out["peak_rss_child_mb"] = max(r["peak_rss_child_mb"] for r in runs)
    out["parity_max_abs_diff"] = max(r["parity_max_abs_diff"] for r in runs)
    out["loadavg_1min"] = [r["loadavg_1min"] for r in runs]
    out["wall_s"] = round(sum(r["wall_s"] for r in runs), 1)
    faults = [r.get("minor_faults_per_step") for r in runs]
    faults = [f for f in faults if f is not None]
    out["minor_faults_per_step"] = int(np.median(faults)) if faults else None
    if out.get("rollout_tokens") and out.get("generate_s"):
        out["rollout_tokens_per_s"] = round(out["rollout_tokens"] / out["generate_s"], 1)
    return out


def log_tail(path: str, lines: int = 30) -> str:
    try:
        return "\n".join(pathlib.Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def skip_reason(system: str, tunix_python: str | None) -> str | None:
    if system == "trl" and importlib.util.find_spec("trl") is None:
        return "trl is not installed here (pip install -r requirements-bench.txt)"
    if system == "tunix":
        if not tunix_python:
            return f"no --tunix-python given (build its venv: {TUNIX_VENV_COMMAND})"
        if not pathlib.Path(tunix_python).exists():
            return f"--tunix-python {tunix_python} does not exist ({TUNIX_VENV_COMMAND})"
    return None


# ------------------------------------------------------------------------- summary
def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def summarize(spec: dict, results: dict, skipped: dict) -> dict:
    """The final JSON: per system its median / min step, phases, peak memory, parity,
    versions; ours' non-default settings; the speedups of ours over each peer; the shape."""
    shape = spec["shape"]
    out: dict = {
        "benchmark": "grpo_step_vs_peers",
        "shape": shape["name"],
        "prompts": shape["prompts"],
        "prompt_len": shape["prompt_len"],
        "generations": shape["generations"],
        "new_tokens": shape["new_tokens"],
        "steps_timed": spec["steps"],
        "warmup_steps": spec["warmup"],
        "rounds": spec.get("rounds", 1),
        "model": "random qwen2 (hidden 256, 4 layers, 4 heads x 64, 2 kv heads, "
        "intermediate 688, vocab 4096, tied), float32",
        "cpus": os.cpu_count(),
        "torch_threads": spec["threads"],
    }
    parity, versions, peak, load, faults, tunables = {}, {}, {}, {}, {}, {}
    for system in SYSTEMS:
        r = results.get(system) or {}
        ok = system in results and r.get("exit_code") == 0
        out[f"{system}_step_s"] = r.get("step_s") if ok else None
        out[f"{system}_step_min_s"] = r.get("step_min_s") if ok else None
        for phase in ("rollout", "generate", "update"):
            out[f"{system}_{phase}_s"] = r.get(f"{phase}_s") if ok else None
        out[f"{system}_first_step_s"] = r.get("first_step_s") if ok else None
        peak[system] = r.get("peak_rss_child_mb") if ok else None
        out[f"{system}_peak_rss_mb"] = peak[system]
        parity[system] = r.get("parity_max_abs_diff")
        versions[system] = r.get("versions")
        load[system] = r.get("loadavg_1min")
        faults[system] = r.get("minor_faults_per_step") if ok else None
        tunables[system] = r.get("glibc_tunables") if ok else None
    out["ours_rollout_tokens_per_s"] = (results.get("ours") or {}).get("rollout_tokens_per_s")
    out["ours_settings"] = (results.get("ours") or {}).get("settings")
    out["ours_sampler"] = (results.get("ours") or {}).get("sampler")
    ours = out["ours_step_s"]
    rounds = {}
    for peer in ("trl", "tunix"):
        theirs = out[f"{peer}_step_s"]
        out[f"speedup_vs_{peer}"] = round(theirs / ours, 2) if ours and theirs else None
        if out[f"speedup_vs_{peer}"] is not None:  # each round's medians on their own
            pairs = zip(results["ours"]["round_step_s"], results[peer]["round_step_s"])
            rounds[peer] = [round(t / o, 2) for o, t in pairs]
    out["round_speedups"] = rounds
    out["peak_rss_mb"] = peak
    # minor page faults of a timed step, and the glibc tunables each process ran with
    out["minor_faults_per_step"] = faults
    out["glibc_tunables"] = tunables
    out["parity_max_abs_diff"] = parity
    out["versions"] = {
        "python": sys.version.split()[0],
        "reczero_jax": _version("reczero-jax"),
        "reference_transformers": _version("transformers"),  # the parity reference
        **{s: v for s, v in versions.items() if v},
    }
    out["skipped"] = skipped
    # 1-minute load average before and after each system: other work distorts the times
    out["loadavg_1min"] = {s: v for s, v in load.items() if v}
    return out


def _cell(x, width: int, digits: int = 3) -> str:
    return f"{x:>{width}.{digits}f}" if isinstance(x, int | float) else f"{'-':>{width}}"


def print_table(summary: dict) -> None:
    """The human-readable table (before the JSON line)."""
    print(
        f"GRPO step, shape {summary['shape']}: {summary['prompts']} prompts x "
        f"{summary['prompt_len']} tokens, G = {summary['generations']}, "
        f"{summary['new_tokens']} new tokens; median (min) of {summary['steps_timed']} steps"
        f" x {summary['rounds']} round(s)"
    )
    head = ("step s", "rollout s", "generate s", "update s", "first s", "peak MB", "parity")
    widths = (16, 10, 11, 9, 8, 8, 9)
    print(f"{'system':8} " + " ".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)))
    for s in SYSTEMS:
        step = summary[f"{s}_step_s"]
        if step is None:
            print(f"{s:8} skipped: {summary['skipped'].get(s, 'failed')}")
            continue
        parity = summary["parity_max_abs_diff"][s]
        cells = [
            f"{step:.3f} ({summary[s + '_step_min_s']:.3f})".rjust(16),
            _cell(summary[f"{s}_rollout_s"], 10),
            _cell(summary[f"{s}_generate_s"], 11),
            _cell(summary[f"{s}_update_s"], 9),
            _cell(summary[f"{s}_first_step_s"], 8, 1),
            _cell(summary["peak_rss_mb"][s], 8, 0),
            f"{parity:>9.1e}" if parity is not None else f"{'-':>9}",
        ]
        print(f"{s:8} " + " ".join(cells))
    for s in SYSTEMS:
        if summary[f"{s}_step_s"] is not None:
            print(f"  {s}: {summary['minor_faults_per_step'][s]} minor page faults a step, "
                  f"GLIBC_TUNABLES={summary['glibc_tunables'][s]!r}")  # fmt: skip
    print(f"speedup vs TRL {summary['speedup_vs_trl']}, vs tunix {summary['speedup_vs_tunix']}")
    for peer, values in summary["round_speedups"].items():
        print(f"  round by round vs {peer}: {values}")


def markdown_rows(summary: dict) -> list[str]:
    """README's table rows (shape | system | median s/step (min) | rollout s | update s |
    first step s | peak RSS | logits vs transformers) for the systems that ran."""
    shape = "RecZero" if summary["shape"] == "reczero" else summary["shape"]
    rows = []
    for s in SYSTEMS:
        step = summary[f"{s}_step_s"]
        if step is None:
            continue
        cells = [
            shape,
            s,
            f"{step:.3f} ({summary[s + '_step_min_s']:.3f})",
            f"{summary[s + '_rollout_s']:.3f}",
            f"{summary[s + '_update_s']:.3f}",
            f"{summary[s + '_first_step_s']:.1f}",
            f"{summary['peak_rss_mb'][s] / 1000:.1f} GB",
            f"{summary['parity_max_abs_diff'][s]:.1e}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=tuple(SHAPES), default="reczero")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per system")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every system this many times, in a rotating order, and pool their steps",
    )
    parser.add_argument("--tunix-python", default=None, help="python of a venv with tunix")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="keep the inputs and logs here")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per system")
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="TRL's torch threads (default: CPU count)"
    )
    parser.add_argument(
        "--peers-huge-pages",
        action="store_true",
        help="give TRL and tunix the glibc tunable ours sets for itself (glibc.malloc.hugetlb=1)",
    )
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown or not systems:
        parser.error(f"--systems: unknown {sorted(unknown)}; choose from {SYSTEMS}")
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error("--steps and --rounds must be >= 1 and --warmup >= 0")

    with tempfile.TemporaryDirectory(prefix="grpo_vs_peers_") as tmp:
        workdir = pathlib.Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        spec = prepare(workdir, args.shape, args.steps, args.warmup, args.seed, args.torch_threads)
        spec["rounds"] = args.rounds
        runs: dict[str, list[dict]] = {}
        skipped, errors = {}, {}
        for system in SYSTEMS:
            reason = "not in --systems" if system not in systems else None
            reason = reason or skip_reason(system, args.tunix_python)
            if reason:
                skipped[system] = reason
                if system in systems:
                    print(f"{system}: skipped: {reason}", flush=True)
            else:
                runs[system] = []
        for r in range(args.rounds):
            for system in round_order(r):
                if system not in runs or system in errors:
                    continue
                python = args.tunix_python if system == "tunix" else sys.executable
                tag = f".r{r}" if args.rounds > 1 else ""
                print(f"{system}: running ({args.warmup} + {args.steps} steps)"
                      f"{f', round {r + 1} of {args.rounds}' if args.rounds > 1 else ''}...",
                      flush=True)  # fmt: skip
                run = run_worker(system, python, workdir, args.timeout, tag, args.peers_huge_pages)
                runs[system].append(run)
                if run["exit_code"] != 0:
                    tail = log_tail(run["log"])
                    print(f"{system}: FAILED (exit {run['exit_code']}); log tail:\n{tail}",
                          flush=True)  # fmt: skip
                    errors[system] = tail.splitlines()[-1] if tail else f"exit {run['exit_code']}"
                    if "refusing to time it" in tail:  # a parity failure stops the benchmark
                        raise SystemExit(f"{system}: logit parity failed: {errors[system]}")
                    continue
                print(f"{system}: median {run.get('step_s')} s/step, min {run.get('step_min_s')}, "
                      f"parity {run.get('parity_max_abs_diff'):.2e}, "
                      f"peak {run['peak_rss_child_mb']} MB", flush=True)  # fmt: skip
        results = {
            system: pool_rounds(r, args.warmup) if system not in errors else r[-1]
            for system, r in runs.items()
        }
        summary = summarize(spec, results, skipped)
        if errors:
            summary["errors"] = errors
    print_table(summary)
    print("README rows:", *markdown_rows(summary), sep="\n")
    print(json.dumps(summary))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
