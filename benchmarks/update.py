"""One GRPO update's throughput and model-FLOPs utilisation (MFU), on random weights.

    python benchmarks/update.py                                   # tiny Qwen2, CPU, < 1 min
    python benchmarks/update.py --shapes qwen2.5-1.5b             # real 1.5B shapes (GPU/TPU)
    python benchmarks/update.py --shapes qwen2.5-1.5b --remat none --micro_groups 1

The update is the project's own: ``rl.step.jit_train_step`` with a ``GRPOObjective`` over
the training ``Forward`` (each prompt once per group, chunked log-probs) and AdamW from
``rl.step.make_optimizer``, compiled once (``lower(...).compile()``) and then run
``--steps`` times after one warm-up; the median step time is reported. The batch is B
prompts of P tokens x G answers of T tokens, every token real (no padding), random ids,
random advantages, old log-probs 0 (KL 0: no reference forward).

Shapes: ``tiny`` is a Qwen2 of hidden 256, 4 layers, vocab 4096 (B 2, G 4, P 128, T 64 by
default); ``qwen2.5-1.5b`` is Qwen2.5-1.5B's architecture (``../shared``'s config.json when
present, else ``lower_config.SHAPES``) at the paper's update shape, B 8 x G 8, P 1,536,
T 512. Defaults: bfloat16 compute and float32 parameters (the shipped configs'),
``remat='full'``, one micro-batch, the einsum attention kernels (``--attention cudnn``:
cuDNN's fused attention, ``model.attention='cudnn'``).

Model FLOPs (:func:`update_flops`) count what the model needs, not what the program runs:
every linear layer on every processed position (B*P prompt + B*G*T answer positions; the
prompt's gradients are needed too, since the answers attend to its keys and values), the
vocabulary projection on answer positions only, and attention over the causally allowed
(query, key) pairs only; the backward pass counts twice the forward (3x in all).
Rematerialised forwards are NOT counted, so with ``remat='full'`` the hardware does about
4/3 of them. ``xla_flops`` is what XLA's cost analysis counts in the compiled program
(recomputation and masked attention scores included; it may be absent on some backends).
XLA counts a loop's body once, so it is comparable with the model FLOPs only with
``--unroll_layers`` and ``--chunk`` >= T.

MFU = model FLOPs / step time / peak, the peak taken from the device's datasheet dense
bfloat16 rate (``device_peaks.PEAK_BF16_FLOPS``; ``--peak_flops`` overrides; null on CPU or for
float32 compute). ``--measure_peak`` also times a matrix product in the compute dtype on
the device (8192^3; 2048^3 on CPU) and reports MFU against that measured rate.
``--phases`` also times the first micro-batch's forward (loss only) and its gradient
alone, and reports how many forwards the backward costs (``backward_over_forward``; its
FLOPs are 2). ``--profile DIR`` traces one more step
with ``jax.profiler`` into DIR and prints where the device time went
(``benchmarks/trace_summary.py``; the JSON gets the per-device busy time and shares).

The LAST line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import jax
import numpy as np

from reczero_jax import sharding
from reczero_jax.model import ModelConfig
from reczero_jax.model.attention import KERNELS
from reczero_jax.model.params import DTYPES, init_params
from reczero_jax.rl.losses import GRPOLoss
from reczero_jax.rl.objectives import Forward, GRPOBatch, GRPOObjective
from reczero_jax.rl.step import (
    batch_sharding,
    init_train_state,
    jit_train_step,
    make_optimizer,
)
from reczero_jax.settings import OptimSettings
from reczero_jax.tools.lower_config import shape_config

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from device_peaks import (  # noqa: E402
    PEAK_BF16_FLOPS,
    datasheet,
    measured_matmul_flops,
    median_seconds,
)
from trace_summary import profile_call  # noqa: E402  (sibling scripts)

TINY = dict(
    model_type="qwen2",
    vocab_size=4096,
    hidden_size=256,
    intermediate_size=1024,
    num_layers=4,
    num_heads=4,
    num_kv_heads=2,
    head_dim=64,
    qkv_bias=True,
    tie_word_embeddings=True,
)
DEFAULT_SHAPE = {
    "tiny": dict(prompts=2, samples=4, prompt_len=128, answer_len=64),
    "qwen2.5-1.5b": dict(prompts=8, samples=8, prompt_len=1536, answer_len=512),
}


def model_config(shapes: str) -> ModelConfig:
    """The architecture benchmarked under ``--shapes``."""
    return ModelConfig(**TINY) if shapes == "tiny" else shape_config(shapes)


def update_flops(config: ModelConfig, b: int, g: int, p: int, t: int) -> dict:
    """Model FLOPs of one GRPO update (forward + backward, no recomputation) of B prompts of
    P tokens x G answers of T tokens in the grouped layout: {'linear', 'lm_head',
    'attention', 'total'}, each a float (see the module docstring)."""
    d, hq, hkv, dh = config.hidden_size, config.num_heads, config.num_kv_heads, config.head_dim
    per_layer = d * (hq + 2 * hkv) * dh + hq * dh * d + 3 * d * config.intermediate_size
    positions = b * p + b * g * t
    answers = b * g * t
    # (query, key) pairs: the prompt causally over itself, each answer token over its whole
    # prompt and causally over its own answer.
    pairs = b * p * (p + 1) // 2 + b * g * (t * p + t * (t + 1) // 2)
    out = {
        "linear": 3.0 * 2 * config.num_layers * per_layer * positions,
        "lm_head": 3.0 * 2 * d * config.vocab_size * answers,
        "attention": 3.0 * 4 * config.num_layers * hq * dh * pairs,
    }
    out["total"] = sum(out.values())
    return out


def _peak_flops(kind: str, dtype_name: str, override: float) -> float | None:
    """The datasheet's dense bf16 rate (``override`` when > 0); None for float32 compute."""
    if override <= 0 and dtype_name != "bfloat16":
        return None
    return datasheet(PEAK_BF16_FLOPS, kind, override)


def random_batch(config: ModelConfig, b: int, g: int, p: int, t: int, seed: int = 0) -> GRPOBatch:
    """A full-length GRPO batch (host numpy arrays) of random ids and advantages."""
    rng = np.random.default_rng(seed)
    return GRPOBatch(
        prompt=rng.integers(1, config.vocab_size, (b, p), dtype=np.int32),
        prompt_valid=np.ones((b, p), bool),
        resp=rng.integers(1, config.vocab_size, (b, g, t), dtype=np.int32),
        resp_mask=np.ones((b, g, t), bool),
        old_logp=np.zeros((b, g, t), np.float32),
        advantages=rng.standard_normal((b, g)).astype(np.float32),
    )


def time_phases(params, objective, mesh, batch, micro: int, repeats: int) -> dict:
    """Median seconds of ``objective`` on the first micro-batch: its loss alone (the
    training forward) and its gradient (forward + backward), each jitted alone with the
    step's shardings;
    ``backward_over_forward`` = (grad - forward) / forward, which is about 2 when the
    backward runs at the forward's rate (it does twice the forward's FLOPs)."""
    first = jax.tree.map(lambda x: x[:micro], batch)

    def loss(p, mb):
        with sharding.use_mesh(mesh, sharding.TRAIN_RULES):
            return objective(p, mb)[0]

    fwd, grad = jax.jit(loss), jax.jit(jax.grad(loss))
    forward_s = median_seconds(lambda: jax.block_until_ready(fwd(params, first)), repeats)
    grad_s = median_seconds(lambda: jax.block_until_ready(grad(params, first)), repeats)
    return {
        "forward_s": round(forward_s, 6),
        "grad_s": round(grad_s, 6),
        "backward_over_forward": round((grad_s - forward_s) / forward_s, 2),
    }


def _cost_flops(compiled) -> float | None:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops else None


def run(args) -> dict:
    config = model_config(args.shapes)
    b, g, p, t = args.prompts, args.samples, args.prompt_len, args.answer_len
    micro = args.micro_groups or b
    if b % micro:
        raise SystemExit(f"--micro_groups {micro} must divide --prompts {b}")
    devices = jax.devices()[: args.devices] if args.devices else jax.devices()
    mesh = sharding.make_mesh((1, -1, 1), devices)
    n_dev = mesh.devices.size
    if b % n_dev or micro % n_dev:
        raise SystemExit(f"--prompts {b} and the micro-batch must be multiples of {n_dev} devices")
    dtype = DTYPES[args.dtype]
    params = init_params(
        config, mesh, sharding.TRAIN_RULES, jax.random.key(0), DTYPES[args.param_dtype]
    )
    n_params = int(sum(x.size for x in jax.tree.leaves(params)))
    state = init_train_state(params, make_optimizer(OptimSettings()))
    forward = Forward(
        config,
        dtype,
        args.remat,
        chunk=args.chunk,
        scan_layers=not args.unroll_layers,
        logits_remat=not args.no_logits_remat,
        attention=args.attention,
    )
    objective = GRPOObjective(forward, GRPOLoss())
    step = jit_train_step(state, mesh, objective, micro)
    batch = jax.device_put(random_batch(config, b, g, p, t), batch_sharding(mesh))
    tick = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - tick
    memory = compiled.memory_analysis()

    state, metrics = compiled(state, batch)  # warm-up
    jax.block_until_ready(state)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    metrics = jax.device_get(metrics)
    if float(metrics["update/skipped"]) != 0.0:
        raise RuntimeError(f"the update was skipped (non-finite loss or gradient): {metrics}")

    seconds = statistics.median(times)
    flops = update_flops(config, b, g, p, t)
    xla = _cost_flops(compiled)
    kind = devices[0].device_kind
    peak = _peak_flops(kind, args.dtype, args.peak_flops)
    rate = flops["total"] / seconds / n_dev  # per chip
    positions = b * p + b * g * t
    out = {
        "shapes": args.shapes,
        "device": kind,
        "devices": n_dev,
        "params": n_params,
        "dtype": args.dtype,
        "param_dtype": args.param_dtype,
        "remat": args.remat,
        "logits_remat": not args.no_logits_remat,
        "scan_layers": not args.unroll_layers,
        "attention": args.attention,
        "prompts": b,
        "samples_per_prompt": g,
        "prompt_len": p,
        "answer_len": t,
        "micro_groups": micro,
        "steps": args.steps,
        "compile_s": round(compile_s, 2),
        "step_s": round(seconds, 4),
        "step_s_min": round(min(times), 4),
        "step_s_max": round(max(times), 4),
        "tokens_per_s": round(positions / seconds, 1),
        "answer_tokens_per_s": round(b * g * t / seconds, 1),
        "model_flops": flops["total"],
        "model_flops_parts": {k: v for k, v in flops.items() if k != "total"},
        "xla_flops": xla,
        "model_tflops_per_s_per_chip": round(rate / 1e12, 3),
        "peak_flops": peak,
        "mfu": None if peak is None else round(rate / peak, 4),
        "temp_bytes": int(getattr(memory, "temp_size_in_bytes", 0) or 0),
        "argument_bytes": int(getattr(memory, "argument_size_in_bytes", 0) or 0),
        "loss": float(metrics["loss"]),
    }
    stats = devices[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
    if args.profile:
        box = [state]

        def one_step():
            box[0], _ = compiled(box[0], batch)
            jax.block_until_ready(box[0])

        out["profile"] = profile_call(one_step, args.profile)
        state = box[0]  # the step donated the old state's buffers
    if args.phases:
        out.update(time_phases(state.params, objective, mesh, batch, micro, args.steps))
    if args.measure_peak:
        # 8192^3 on accelerators; 2048^3 on CPU (the same rate, in seconds, not minutes)
        n = 2048 if devices[0].platform == "cpu" else 8192
        measured = measured_matmul_flops(n, dtype=dtype)
        out["measured_matmul_flops"] = round(measured, 1)
        out["measured_matmul_dtype"] = args.dtype
        out["mfu_vs_measured"] = round(rate / measured, 4)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", choices=("tiny", "qwen2.5-1.5b", "qwen2.5-7b"), default="tiny")
    parser.add_argument("--prompts", type=int, default=None, help="prompts B")
    parser.add_argument("--samples", type=int, default=None, help="answers per prompt G")
    parser.add_argument("--prompt_len", type=int, default=None)
    parser.add_argument("--answer_len", type=int, default=None)
    parser.add_argument("--micro_groups", type=int, default=0, help="0: one micro-batch")
    parser.add_argument("--devices", type=int, default=0, help="FSDP over the first N (0: all)")
    parser.add_argument("--remat", default="full", choices=("none", "full", "dots"))
    parser.add_argument("--no_logits_remat", action="store_true")
    parser.add_argument("--unroll_layers", action="store_true")
    parser.add_argument("--chunk", type=int, default=64, help="log-prob chunk (positions)")
    parser.add_argument(
        "--attention", default="einsum", choices=KERNELS, help="'cudnn': NVIDIA GPUs, bf16"
    )
    parser.add_argument("--dtype", default="bfloat16", choices=tuple(DTYPES))
    parser.add_argument("--param_dtype", default="float32", choices=tuple(DTYPES))
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up")
    parser.add_argument("--peak_flops", type=float, default=0.0, help="FLOP/s per chip")
    parser.add_argument("--measure_peak", action="store_true")
    parser.add_argument(
        "--phases", action="store_true", help="also time the forward and the gradient alone"
    )
    parser.add_argument(
        "--profile", default="", help="trace one more step into this folder, print a summary"
    )
    args = parser.parse_args(argv)
    shape = DEFAULT_SHAPE["tiny" if args.shapes == "tiny" else "qwen2.5-1.5b"]
    for name, default in shape.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
