"""The sampler of this checkout against the sampler of an earlier commit, in ONE process.

    python benchmarks/sampler_ab.py --baseline HEAD~1                    # sampler.py's shape
    python benchmarks/sampler_ab.py --baseline HEAD~1 --prompts 4 --samples 8 \\
        --prompt_len 1024 --new_tokens 128 --intermediate 688           # RecZero's shape

Rollouts on a shared CPU machine move by 30% and more from one minute to the next (slow
phases hit every process alike), so two processes run one after the other cannot resolve
a change of a few percent. This script copies the ``reczero_jax`` package of
``--baseline`` (``git archive``) into a temporary folder under another name, builds the
same tiny random Qwen2 (hidden 256, 4 layers, vocab 4096; ``--intermediate`` sets its MLP
width: 1,024 as in ``benchmarks/sampler.py``, 688 as in the peer benchmark) with both
packages, and times the two samplers' calls alternately, in ABAB... then BABA... order
(float32, sampling at temperature 1, EOS disabled, the same key every call). A slow phase
then hits both sides of each pair: the median of the per-pair ratios is the figure.

It also reports whether both sampled the same tokens (a change that rounds differently
may, over a long softmax, pick a different token somewhere; then the log-probs differ
where the answers do).

The LAST line printed is one JSON object: ``median_ratio`` (this checkout's call time over
the baseline's; below 1 is faster), both medians in ms, the same-tokens flag.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from update import TINY  # noqa: E402  (sibling script: the benchmarks' tiny Qwen2)

from reczero_jax.sampling.sampler import DECODE_LOOPS, unrolls  # noqa: E402
from reczero_jax.settings import SamplingSettings  # noqa: E402

BASELINE_NAME = "reczero_baseline"


def export_baseline(rev: str, into: pathlib.Path) -> None:
    """``reczero_jax`` at ``rev`` as package ``reczero_baseline`` under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "reczero_jax"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    package = into / "reczero_jax"
    for path in package.rglob("*.py"):
        path.write_text(path.read_text().replace("reczero_jax", BASELINE_NAME))
    package.rename(into / BASELINE_NAME)


def build_sampler(package: str, args):
    """(sampler, params) of ``package`` for the tiny model and the requested shape."""

    def load(module):
        return importlib.import_module(f"{package}.{module}")

    sharding, model_config = load("sharding"), load("model.model_config")
    params_mod, methods, sampler = (
        load("model.params"),
        load("sampling.methods"),
        load("sampling.sampler"),
    )
    config = model_config.ModelConfig(**{**TINY, "intermediate_size": args.intermediate})
    mesh = sharding.make_mesh((1, -1, 1))
    params = params_mod.init_params(
        config, mesh, sharding.SAMPLE_RULES, jax.random.key(0), jnp.float32
    )
    spec = sampler.SamplerSpec(
        max_new_tokens=args.new_tokens,
        method=methods.Sampling(1.0),
        eos_ids=(),
        pad_id=0,
        buckets=(args.prompt_len,),
        unroll_layers=args.unroll_layers,
        cache_phases=args.cache_phases,
    )
    return sampler.GroupSampler(config, mesh, spec, dtype=jnp.float32), params


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare with")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--prompt_len", type=int, default=128)
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--intermediate", type=int, default=1024)
    parser.add_argument("--decode_loop", choices=tuple(DECODE_LOOPS), default="auto")
    parser.add_argument("--cache_phases", type=int, default=SamplingSettings.cache_phases)
    parser.add_argument("--calls", type=int, default=30, help="timed calls of each sampler")
    args = parser.parse_args(argv)
    # decided here, by this checkout's rule, so both samplers run the same decode loop
    args.unroll_layers = unrolls(args.decode_loop, jax.default_backend())

    with tempfile.TemporaryDirectory() as tmp:
        export_baseline(args.baseline, pathlib.Path(tmp))
        sys.path.insert(0, tmp)
        sides = {
            "baseline": build_sampler(BASELINE_NAME, args),
            "current": build_sampler("reczero_jax", args),
        }
        prompts = np.random.default_rng(0).integers(3, 4096, (args.prompts, args.prompt_len))
        prompts = prompts.tolist()
        key = jax.random.key(1)

        def call(side):
            sampler, params = sides[side]
            return sampler.sample(params, prompts, args.samples, key)

        tokens = {}
        for side in sides:  # compile, warm up
            for _ in range(3):
                tokens[side] = np.asarray(jax.block_until_ready(call(side).tokens))
        times = {side: [] for side in sides}
        for i in range(args.calls):
            order = list(sides) if i % 2 == 0 else list(sides)[::-1]
            for side in order:
                start = time.perf_counter()
                jax.block_until_ready(call(side).tokens)
                times[side].append(time.perf_counter() - start)
    ratios = np.asarray(times["current"]) / np.asarray(times["baseline"])
    result = {
        "baseline": args.baseline,
        "settings": {k: v for k, v in vars(args).items() if k != "baseline"},
        "baseline_ms": round(float(np.median(times["baseline"])) * 1e3, 1),
        "current_ms": round(float(np.median(times["current"])) * 1e3, 1),
        "median_ratio": round(float(np.median(ratios)), 3),
        "ratio_quartiles": [round(float(q), 3) for q in np.percentile(ratios, [25, 75])],
        "same_tokens": bool((tokens["baseline"] == tokens["current"]).all()),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
