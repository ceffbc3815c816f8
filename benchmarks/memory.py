"""Compiled memory per device of one GRPO update at Qwen2.5-1.5B / 7B shapes, no weights.

    python benchmarks/memory.py                       # both models, 8 and 64 chips, searches
    python benchmarks/memory.py --quick               # 1.5B, 8 chips, paper shape only
    python benchmarks/memory.py --models qwen2.5-7b --devices 64 --no-search

Nothing is allocated: parameters, AdamW state and the batch are ``jax.ShapeDtypeStruct``s
with their shardings (``jax.eval_shape``), and each update is
``jax.jit(...).lower(...).compile().memory_analysis()`` on a fake CPU platform of 64
devices (this script sets ``--xla_force_host_platform_device_count=64`` before importing
jax unless XLA_FLAGS already names a device count). Meshes are the first 8 and all 64
devices, shape (data 1, fsdp N, tensor 1): the project's TRAIN_RULES, i.e. weights and
AdamW moments FSDP-sharded along the embedding dimension, every batch field split over
the N chips along its group axis (``rl.step.batch_sharding``). The batch therefore needs a
multiple of N prompts: at 64 chips the paper's 8 prompts cannot be laid out and the
paper-shape row uses the smallest legal batch, 64 prompts (its ``prompts`` column says so).

Shapes: Qwen2.5-1.5B from ``../shared/tokenizers/qwen2.5/config.json`` when present, else
``reczero_jax.tools.lower_config.SHAPES['qwen2.5-1.5b']``; Qwen2.5-7B from
``SHAPES['qwen2.5-7b']`` (hidden 3584, 28 layers, 28 heads, 4 KV heads, intermediate
18944, vocab 152064, untied). The paper's update: B = 8 prompts x G = 8 answers, prompt
P = 1,536 tokens, answer T = 512 tokens, one micro-batch (``micro_groups = B``), KL 0
(no reference log-probs in the batch), AdamW from ``rl.step.make_optimizer`` (clipping
1.0). Default dtypes: bfloat16 parameters and compute (``--param-dtype`` / ``--dtype``
take the names of ``model.params.DTYPES``; the shipped 7B config keeps float32
parameters). With bfloat16 parameters the AdamW moments are created in bfloat16, but the
gradients are accumulated in float32 by ``train_step`` and optax's update returns the first
moment in float32: the output is larger than the argument and only partly aliased.

Variants (all go through ``rl.step.jit_train_step`` / ``train_step`` with a
``GRPOObjective``; only the forward differs):

* ``ours``: ``rl.objectives.Forward``: each prompt once per group
  (``Decoder(mode='grouped')``, [B, P + G*T]) and log-probs from chunked, rematerialised
  vocabulary projections (``rl.logprobs.token_logprobs``, 64 positions per chunk).
* ``naive``: :class:`NaiveForward`: every prompt repeated G times, ``Decoder(mode='full')``
  over [B*G, P + T], then full float32 logits [B*G, T, V] and ``log_softmax``.

each with the decoder's ``remat='none'`` and ``remat='full'``.

Memory, per device (XLA's compiled SPMD program is the per-device program, so
``memory_analysis`` is already per device: checked on a sharded array, its argument size
is the global size / N): argument (params + AdamW state + step + batch shard), output
(new state + metrics), alias (outputs written into donated arguments: the state is
donated), temp (XLA's scratch buffers: activations, gradients, logits...), and

    peak = argument + output - alias + temp

(generated code is ignored). Compiles run with ``xla_backend_optimization_level=0`` (LLVM
only: the sizes are the same, the compile twice faster; ``--full-codegen`` turns it off).
These are XLA:CPU's buffer assignments; TPU fuses, schedules and lays out buffers
differently, so read the numbers as estimates.

Fits: for each model, chip count, budget (TPU v5e 16 GiB, v5p 95 GiB per chip) and
searched variant (``ours``/``naive`` with remat 'full' by default), the largest number of
prompts per step B (G = 8, B a multiple of N, one micro-batch: with gradient
accumulation any B fits whose micro-batch does) with peak <= budget: doubling from N, then
bisection (its first split point interpolated, see :func:`largest_fitting`), one compile
per tried B (shared between the budgets), stopping at ``--cap`` prompts (default 1024).

Output: two Markdown tables (paper shape, fits), then the LAST line, one JSON object with keys

* ``dtype``, ``param_dtype``: the dtype names; ``shape``: {prompts, answers_per_prompt,
  prompt_len, answer_len}; ``formula``: the peak formula; ``budgets_gib``: {name: GiB};
  ``cap``: the search cap; ``seconds``: the run's wall time.
* ``models``: {model name: {``params``: parameter count, ``chips``: {N (as a string):
  {``paper``: {variant key ``'ours/full'`` etc.: {prompts, argument, output, alias, temp,
  peak (bytes per device), compile_s}}, ``fits``: {variant key: {budget name:
  {prompts, peak, next_prompts, next_peak, capped, tried}}}}}}}. ``prompts`` is 0 when
  even N prompts do not fit; ``next_*`` describe B + N (null when capped); ``tried``
  counts the B evaluated (the budgets share compiles, so they may overlap).
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=64"
    ).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

from reczero_jax import sharding  # noqa: E402
from reczero_jax.model.decoder import (  # noqa: E402
    Decoder,
    lm_head_kernel,
    logits_from_hidden,
    positions_from_mask,
)
from reczero_jax.model.model_config import ModelConfig  # noqa: E402
from reczero_jax.model.params import DTYPES, sharded_param_shapes  # noqa: E402
from reczero_jax.rl.losses import GRPOLoss  # noqa: E402
from reczero_jax.rl.objectives import Forward, GRPOBatch, GRPOObjective  # noqa: E402
from reczero_jax.rl.step import (  # noqa: E402
    abstract_train_state,
    batch_sharding,
    jit_train_step,
    make_optimizer,
)
from reczero_jax.settings import OptimSettings  # noqa: E402
from reczero_jax.tools.lower_config import SHAPES, shape_config  # noqa: E402

GIB = 1 << 30
BUDGETS_GIB = {"v5e": 16.0, "v5p": 95.0}  # HBM per chip
PAPER = dict(prompts=8, answers_per_prompt=8, prompt_len=1536, answer_len=512)
VARIANTS = ("ours/none", "ours/full", "naive/none", "naive/full")
SEARCHED = ("ours/full", "naive/full")
# LLVM's optimisation level shapes only the generated machine code, not XLA's buffer
# assignment: the sizes are identical (checked on 1.5B, 8 and 64 chips) and compiles are
# about twice as fast at level 0.
FAST_CODEGEN = {"xla_backend_optimization_level": 0}
FORMULA = "peak = argument + output - alias + temp (per device; generated code ignored)"


def fsdp_mesh(devices: Sequence[jax.Device]) -> Mesh:
    """(data 1, fsdp len(devices), tensor 1) over ``devices``."""
    return sharding.make_mesh((1, -1, 1), list(devices))


@dataclasses.dataclass(frozen=True)
class NaiveForward:
    """The textbook forward: (logp, entropy) float32 [B, G, T] from every prompt repeated
    G times, ``Decoder(mode='full')`` over [B*G, P + T], full float32 logits [B*G, T, V]
    and ``log_softmax`` (no chunking, no rematerialisation of the logits)."""

    config: ModelConfig
    dtype: Any = jnp.float32
    remat: str = "none"
    temperature: float = 1.0

    def __call__(self, params, batch) -> tuple[jax.Array, jax.Array]:
        b, g, t = batch.resp.shape
        p = batch.prompt.shape[1]
        tokens = jnp.concatenate(
            [jnp.repeat(batch.prompt, g, axis=0), batch.resp.reshape(b * g, t)], axis=1
        ).astype(jnp.int32)
        valid = jnp.concatenate(
            [jnp.repeat(batch.prompt_valid, g, axis=0), batch.resp_mask.reshape(b * g, t)],
            axis=1,
        ).astype(bool)
        model = Decoder(
            self.config, dtype=self.dtype, remat=self.remat, mode="full", output="hidden"
        )
        hidden, _ = model.apply(
            {"params": params}, tokens, positions_from_mask(valid), {"key_valid": valid}
        )
        h = hidden[:, p - 1 : p + t - 1]  # [B*G, T, D]: the states predicting each token
        kernel = lm_head_kernel(params, self.config)
        logits = logits_from_hidden(h, kernel, self.dtype) / self.temperature  # f32 [BG, T, V]
        logits = sharding.constrain(logits, "act_batch", "act_length", "act_vocab")
        logp_all = jax.nn.log_softmax(logits, axis=-1)
        y = batch.resp.reshape(b * g, t).astype(jnp.int32)
        logp = jnp.take_along_axis(logp_all, y[..., None], axis=-1)[..., 0]
        entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
        return logp.reshape(b, g, t), entropy.reshape(b, g, t)


def objective(config: ModelConfig, variant: str, dtype: Any) -> GRPOObjective:
    """The GRPO objective (paper settings: KL 0) of ``variant`` 'ours/none', 'naive/full'..."""
    kind, remat = variant.split("/")
    if kind == "ours":
        forward = Forward(config, dtype, remat)
    elif kind == "naive":
        forward = NaiveForward(config, dtype, remat)
    else:
        raise ValueError(f"variant must be ours/... or naive/..., got {variant!r}")
    return GRPOObjective(forward, GRPOLoss())


def abstract_state(config: ModelConfig, mesh: Mesh, param_dtype: Any):
    """The TrainState (params + AdamW state + step) as sharded ShapeDtypeStructs."""
    params = sharded_param_shapes(config, mesh, sharding.TRAIN_RULES, param_dtype)
    return abstract_train_state(params, make_optimizer(OptimSettings()))


def abstract_batch(mesh: Mesh, b: int, g: int, p: int, t: int) -> GRPOBatch:
    """A GRPOBatch of B groups (no reference log-probs: KL 0), split like training's."""
    rows = batch_sharding(mesh)
    sds = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=rows)  # noqa: E731
    return GRPOBatch(
        prompt=sds((b, p), jnp.int32),
        prompt_valid=sds((b, p), bool),
        resp=sds((b, g, t), jnp.int32),
        resp_mask=sds((b, g, t), bool),
        old_logp=sds((b, g, t), jnp.float32),
        advantages=sds((b, g), jnp.float32),
    )


def measure(
    config: ModelConfig,
    mesh: Mesh,
    variant: str,
    prompts: int,
    g: int = PAPER["answers_per_prompt"],
    p: int = PAPER["prompt_len"],
    t: int = PAPER["answer_len"],
    dtype: Any = jnp.bfloat16,
    param_dtype: Any = jnp.bfloat16,
    compiler_options: dict | None = FAST_CODEGEN,
) -> dict:
    """Per-device bytes of one compiled GRPO update of ``prompts`` groups on ``mesh``:
    {prompts, argument, output, alias, temp, peak, compile_s}."""
    tick = time.perf_counter()
    state = abstract_state(config, mesh, param_dtype)
    batch = abstract_batch(mesh, prompts, g, p, t)
    step = jit_train_step(state, mesh, objective(config, variant, dtype), prompts)
    stats = step.lower(state, batch).compile(compiler_options).memory_analysis()
    out = {
        "prompts": prompts,
        "argument": int(stats.argument_size_in_bytes),
        "output": int(stats.output_size_in_bytes),
        "alias": int(stats.alias_size_in_bytes),
        "temp": int(stats.temp_size_in_bytes),
    }
    out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    out["compile_s"] = round(time.perf_counter() - tick, 2)
    return out


def largest_fitting(peak_of: Callable[[int], int], budget: float, step: int, cap: int) -> dict:
    """The largest multiple B of ``step`` (step <= B <= cap) with ``peak_of(B) <= budget``.

    Doubling from ``step`` brackets the answer (lo fits, hi does not, or the cap fits);
    bisection then narrows the bracket to one ``step``. The first split point of the
    bisection is interpolated linearly between the bracket's peaks (memory is nearly
    affine in B), and its neighbour is tried next, so that the search usually ends there;
    the later split points are midpoints. ``peak_of`` is assumed to grow with B and is
    called once per B (one compile each). Returns {prompts (0: not even ``step`` fits),
    peak, next_prompts, next_peak (B + step; None when capped), capped, tried (how many
    B were evaluated)}.
    """
    seen: dict[int, int] = {}

    def fits(b: int) -> bool:
        if b not in seen:
            seen[b] = peak_of(b)
        return seen[b] <= budget

    cap = max(step, cap // step * step)
    lo, hi = 0, None  # invariant: lo == 0 or fits(lo); hi is None or not fits(hi)
    b = step
    while hi is None:  # doubling
        if fits(b):
            lo = b
            if b == cap:
                break
            b = min(2 * b, cap)
        else:
            hi = b
    if hi is not None and lo > 0 and hi - lo > step:  # one interpolated guess + neighbour
        frac = (budget - seen[lo]) / max(seen[hi] - seen[lo], 1)
        guess = min(max(lo + int(frac * (hi - lo)) // step * step, lo + step), hi - step)
        if fits(guess):
            lo = guess
            if guess + step < hi:
                lo, hi = (guess + step, hi) if fits(guess + step) else (lo, guess + step)
        else:
            hi = guess
            if guess - step > lo:
                lo, hi = (guess - step, hi) if fits(guess - step) else (lo, guess - step)
    while hi is not None and hi - lo > step:  # bisection
        mid = (lo + hi) // 2 // step * step
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    capped = hi is None
    return {
        "prompts": lo,
        "peak": seen.get(lo),
        "next_prompts": hi,
        "next_peak": None if capped else seen[hi],
        "capped": capped,
        "tried": len(seen),
    }


def _gib(x: float | None) -> str:
    return "-" if x is None else f"{x / GIB:.2f}"


def _fit_cell(fit: dict, step: int) -> str:
    if fit["prompts"] == 0:
        return f"none (< {step})"
    peak = _gib(fit["peak"])
    return f">= {fit['prompts']} (cap; {peak})" if fit["capped"] else f"{fit['prompts']} ({peak})"


def tables(result: dict) -> str:
    """The Markdown tables of a result dict (see the module docstring)."""
    shape = result["shape"]
    lines = [
        f"GRPO update of {shape['prompts']} prompts (rounded up to a multiple of the chips, "
        f"over which the batch is split) x {shape['answers_per_prompt']} answers, prompt "
        f"{shape['prompt_len']} + answer {shape['answer_len']} tokens, one micro-batch; "
        f"params {result['param_dtype']}, compute {result['dtype']}, AdamW; "
        f"GiB per device; {result['formula']}",
        "",
        "| model | chips | variant | remat | prompts | argument | output | alias | temp | "
        "peak | compile s |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in result["models"].items():
        for n, c in m["chips"].items():
            for key, r in c["paper"].items():
                kind, remat = key.split("/")
                lines.append(
                    f"| {name} | {n} | {kind} | {remat} | {r['prompts']} | "
                    f"{_gib(r['argument'])} | {_gib(r['output'])} | {_gib(r['alias'])} | "
                    f"{_gib(r['temp'])} | **{_gib(r['peak'])}** | {r['compile_s']:.1f} |"
                )
    fits = [
        (name, n, key, f)
        for name, m in result["models"].items()
        for n, c in m["chips"].items()
        for key, f in c.get("fits", {}).items()
    ]
    if fits:
        budgets = result["budgets_gib"]
        lines += [
            "",
            "Largest prompts per step (x 8 answers, one micro-batch) with peak <= budget "
            f"(peak GiB in brackets; search capped at {result['cap']} prompts):",
            "",
            "| model | chips | variant | remat | "
            + " | ".join(f"{b} ({g:g} GiB)" for b, g in budgets.items())
            + " |",
            "|---|---:|---|---|" + "---:|" * len(budgets),
        ]
        for name, n, key, f in fits:
            kind, remat = key.split("/")
            cells = " | ".join(_fit_cell(f[b], int(n)) for b in budgets)
            lines.append(f"| {name} | {n} | {kind} | {remat} | {cells} |")
    return "\n".join(lines)


def run(
    models: Sequence[str],
    device_counts: Sequence[int],
    variants: Sequence[str] = VARIANTS,
    searched: Sequence[str] = SEARCHED,
    budgets_gib: dict[str, float] | None = None,
    cap: int = 1024,
    dtype: str = "bfloat16",
    param_dtype: str = "bfloat16",
    shape: dict | None = None,
    configs: dict[str, ModelConfig] | None = None,
    devices: Sequence[jax.Device] | None = None,
    compiler_options: dict | None = FAST_CODEGEN,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Measures the paper-shape update of every variant and runs the fit searches.

    ``configs`` overrides :func:`lower_config.shape_config` by name (tests pass tiny shapes);
    ``devices`` defaults to ``jax.devices()`` (a mesh uses the first N of them).
    """
    start = time.perf_counter()
    budgets_gib = dict(BUDGETS_GIB if budgets_gib is None else budgets_gib)
    shape = dict(PAPER if shape is None else shape)
    devices = list(jax.devices() if devices is None else devices)
    cdt, pdt = DTYPES[dtype], DTYPES[param_dtype]
    g, p, t = shape["answers_per_prompt"], shape["prompt_len"], shape["answer_len"]
    result: dict = {
        "dtype": dtype,
        "param_dtype": param_dtype,
        "shape": shape,
        "formula": FORMULA,
        "budgets_gib": budgets_gib,
        "cap": cap,
        "models": {},
    }
    for name in models:
        config = (configs or {}).get(name) or shape_config(name)
        entry = {"params": config.num_params(), "chips": {}}
        result["models"][name] = entry
        for n in device_counts:
            if n > len(devices):
                raise ValueError(f"{n} chips asked for, {len(devices)} devices present")
            mesh = fsdp_mesh(devices[:n])
            shards = sharding.batch_shards(mesh)
            cache: dict[tuple[str, int], dict] = {}

            def one(variant: str, b: int, mesh=mesh, cache=cache, config=config, name=name):
                if (variant, b) not in cache:
                    r = measure(config, mesh, variant, b, g, p, t, cdt, pdt, compiler_options)
                    cache[variant, b] = r
                    log(
                        f"  {name} {mesh.size} chips {variant} B={b}: peak "
                        f"{_gib(r['peak'])} GiB temp {_gib(r['temp'])} ({r['compile_s']:.1f} s)"
                    )
                return cache[variant, b]

            b0 = -(-shape["prompts"] // shards) * shards  # the paper's B, rounded up
            chips = {"paper": {v: one(v, b0) for v in variants}, "fits": {}}
            for v in searched:
                chips["fits"][v] = {
                    bname: largest_fitting(lambda b, v=v: one(v, b)["peak"], gib * GIB, shards, cap)
                    for bname, gib in budgets_gib.items()
                }
            entry["chips"][str(n)] = chips
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=["qwen2.5-1.5b", "qwen2.5-7b"], choices=sorted(SHAPES)
    )
    parser.add_argument("--devices", nargs="+", type=int, default=[8, 64], help="chip counts")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument(
        "--search",
        nargs="*",
        default=list(SEARCHED),
        choices=VARIANTS,
        help="variants whose largest fitting batch is searched (none given: no search)",
    )
    parser.add_argument("--no-search", action="store_true", help="same as --search with none")
    parser.add_argument("--cap", type=int, default=1024, help="largest prompts per step tried")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument("--param-dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument(
        "--full-codegen",
        action="store_true",
        help="compile at XLA's default LLVM level (same sizes, about twice slower)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="qwen2.5-1.5b on 8 chips, paper shape, no search"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.devices, args.no_search = ["qwen2.5-1.5b"], [8], True
    result = run(
        args.models,
        args.devices,
        variants=args.variants,
        searched=[] if args.no_search else args.search,
        cap=args.cap,
        dtype=args.dtype,
        param_dtype=args.param_dtype,
        compiler_options=None if args.full_codegen else FAST_CODEGEN,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    print(tables(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
