"""Group-sampling throughput: our jitted KV-cache sampler against transformers' generate.

    python benchmarks/sampler.py                          # tiny Qwen2, CPU, < 5 minutes
    python benchmarks/sampler.py --shapes qwen2.5-1.5b    # real shapes, random bf16 (GPU)

Tiny mode: the SAME random Qwen2 weights (hidden 256, 4 layers, vocab 4096) are sampled
by our sampler and by ``transformers.generate`` (PyTorch, KV cache, sampling), with the
same B prompts x G samples, prompt length and number of new tokens (EOS disabled so both
generate every token). transformers expands each prompt G times (``num_return_sequences``)
and prefills every copy; ours prefills each prompt once.

qwen2.5-1.5b mode: the shapes of ``../shared/tokenizers/qwen2.5/config.json`` (or built-in
copies of them), random bf16 weights, batch >= 64 rows; reports decode tokens/s and the
fraction of the HBM-bandwidth roofline: (the fewest bytes a decode step must read: every
weight once, each prompt's cache once, each row's generated cache so far) / step time /
peak bandwidth (the datasheet's; ``--measure_peak`` also times a 4 GiB
elementwise pass on the device, bytes read + written, and reports the fraction of that).
``--profile DIR`` traces one more call with ``jax.profiler`` and prints where the device
time went (``benchmarks/trace_summary.py``).

The LAST line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from reczero_jax import sharding
from reczero_jax.model import ModelConfig
from reczero_jax.model.params import init_params
from reczero_jax.sampling.methods import Sampling
from reczero_jax.sampling.sampler import DECODE_LOOPS, GroupSampler, SamplerSpec, unrolls
from reczero_jax.settings import SamplingSettings
from reczero_jax.tools.lower_config import shape_config

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from device_peaks import (  # noqa: E402  (sibling scripts)
    PEAK_HBM_BYTES_PER_S,
    datasheet,
    measured_copy_bandwidth,
)
from trace_summary import profile_call  # noqa: E402


def _time_sampler(sampler, params, prompts, g, repeats):
    out = sampler.sample(params, prompts, g)  # compile + warm-up
    jax.block_until_ready(out.tokens)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = sampler.sample(params, prompts, g)
        jax.block_until_ready(out.tokens)
        best = min(best, time.perf_counter() - start)
    return best, out


def _ours(config, params, mesh, prompts, dtype, args):
    """(seconds for the whole call, decode step seconds, generated tokens, compiles,
    prefill seconds, profile summary or None), with the command line's samples, new tokens,
    repeats, layer unrolling and profile folder."""
    g, new_tokens, repeats, profile = args.samples, args.new_tokens, args.repeats, args.profile

    def sampler(n):
        spec = SamplerSpec(
            max_new_tokens=n,
            method=Sampling(1.0),
            eos_ids=(),
            pad_id=0,
            buckets=(len(prompts[0]),),
            unroll_layers=args.unroll_layers,
            cache_phases=args.cache_phases,
        )
        return GroupSampler(config, mesh, spec, dtype=dtype)

    full = sampler(new_tokens)
    seconds, out = _time_sampler(full, params, prompts, g, repeats)
    b, p = len(prompts), len(prompts[0])
    # GroupSamples is laid out by group: [B, G, T] / [B, G], with the padded prompts [B, P].
    if out.tokens.shape != (b, g, new_tokens) or out.lengths.shape != (b, g):
        raise RuntimeError(f"unexpected sample shapes {out.tokens.shape}, {out.lengths.shape}")
    if out.prompt.shape != (b, p) or not np.array_equal(np.asarray(out.prompt), prompts):
        raise RuntimeError(f"the returned prompts {out.prompt.shape} are not the given ones")
    prefill_only = sampler(1)
    prefill_seconds, _ = _time_sampler(prefill_only, params, prompts, g, repeats)
    generated = int(np.asarray(out.lengths).sum())  # over all B x G samples
    step = (seconds - prefill_seconds) / max(new_tokens - 1, 1)
    summary = None
    if profile:

        def once():
            jax.block_until_ready(full.sample(params, prompts, g).tokens)

        summary = profile_call(once, profile)
    return seconds, step, generated, full.compiles, prefill_seconds, summary


def _hf(hf_dir, prompts, g, new_tokens, repeats):
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count() or 1)
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    ids = torch.tensor(prompts)
    kwargs = dict(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        num_return_sequences=g,
        use_cache=True,
        pad_token_id=0,
        eos_token_id=None,
        attention_mask=torch.ones_like(ids),
    )
    with torch.no_grad():
        model.generate(ids, **kwargs)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            out = model.generate(ids, **kwargs)
            best = min(best, time.perf_counter() - start)
    generated = int(out[:, ids.shape[1] :].numel())
    return best, generated


def run_tiny(args) -> dict:
    import torch
    import transformers

    from reczero_jax.hf.checkpoint import load_hf_params

    torch.manual_seed(0)
    hf_config = transformers.Qwen2Config(
        vocab_size=4096,
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    model = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)
    rng = np.random.default_rng(0)
    prompts = rng.integers(1, 4096, (args.batch, args.prompt_len)).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        del model
        config = ModelConfig.from_hf_dir(tmp)
        mesh = sharding.make_mesh((1, -1, 1))
        params = load_hf_params(tmp, config)
        hf_s, hf_tokens = _hf(tmp, prompts, args.samples, args.new_tokens, args.repeats)
    ours_s, step_s, ours_tokens, compiles, prefill_s, summary = _ours(
        config, params, mesh, prompts, jnp.float32, args
    )
    ours_tps, hf_tps = ours_tokens / ours_s, hf_tokens / hf_s
    return {
        "shapes": "tiny-qwen2 (hidden 256, 4 layers, vocab 4096)",
        "device": jax.devices()[0].device_kind,
        "unroll_layers": args.unroll_layers,
        "cache_phases": args.cache_phases,
        "batch_prompts": args.batch,
        "samples_per_prompt": args.samples,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "ours_seconds": round(ours_s, 4),
        "hf_seconds": round(hf_s, 4),
        "ours_tokens_per_s": round(ours_tps, 1),
        "hf_tokens_per_s": round(hf_tps, 1),
        "speedup_vs_hf": round(ours_tps / hf_tps, 2),
        "prefill_ms": round(prefill_s * 1e3, 2),
        "decode_step_ms": round(step_s * 1e3, 3),
        "compiles": compiles,
        **({"profile": summary} if summary else {}),
    }


def run_real_shapes(args) -> dict:
    config = shape_config("qwen2.5-1.5b")
    mesh = sharding.make_mesh((1, -1, 1))
    dtype = jnp.dtype(args.dtype)
    params = init_params(config, mesh, sharding.SAMPLE_RULES, jax.random.key(0), dtype)
    rng = np.random.default_rng(0)
    prompts = rng.integers(1, config.vocab_size, (args.batch, args.prompt_len)).tolist()
    seconds, step_s, tokens, compiles, prefill_s, summary = _ours(
        config, params, mesh, prompts, dtype, args
    )
    rows = args.batch * args.samples
    weight_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
    kv_per_token = 2 * config.num_layers * config.num_kv_heads * config.head_dim * dtype.itemsize
    # The fewest bytes a decode step must read: every weight once, the prompt cache once per
    # PROMPT (shared by its G samples) and each row's generated cache so far (on average
    # (new_tokens - 1) / 2 tokens). Our attention reads the whole preallocated slab of
    # new_tokens slots per row; the roofline is taken over the needed bytes only.
    kv_bytes = kv_per_token * (args.batch * args.prompt_len + rows * (args.new_tokens - 1) / 2)
    kv_bytes = int(kv_bytes)
    step_bytes = weight_bytes + kv_bytes
    kind = jax.devices()[0].device_kind
    peak = datasheet(PEAK_HBM_BYTES_PER_S, kind, args.peak_bw)
    out = {
        "shapes": f"qwen2.5-1.5b (random {args.dtype} weights)",
        "device": kind,
        "batch_prompts": args.batch,
        "samples_per_prompt": args.samples,
        "rows": rows,
        "unroll_layers": args.unroll_layers,
        "cache_phases": args.cache_phases,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "ours_tokens_per_s": round(tokens / seconds, 1),
        "decode_tokens_per_s": round(rows / step_s, 1),
        "prefill_ms": round(prefill_s * 1e3, 2),
        "decode_step_ms": round(step_s * 1e3, 3),
        "weight_bytes": weight_bytes,
        "kv_bytes_per_step": kv_bytes,
        "hbm_bytes_per_s": round(step_bytes / step_s, 1),
        "roofline_fraction": None if peak is None else round(step_bytes / step_s / peak, 3),
        "peak_hbm_bytes_per_s": peak,
        "compiles": compiles,
    }
    if summary is not None:
        out["profile"] = summary
    if args.measure_peak:
        measured = measured_copy_bandwidth()
        out["measured_copy_bytes_per_s"] = round(measured, 1)
        out["roofline_fraction_vs_measured"] = round(step_bytes / step_s / measured, 3)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", choices=("tiny", "qwen2.5-1.5b"), default="tiny")
    parser.add_argument("--batch", type=int, default=None, help="prompts B")
    parser.add_argument("--samples", type=int, default=4, help="samples per prompt G")
    parser.add_argument("--prompt_len", type=int, default=128)
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--peak_bw", type=float, default=0.0, help="bytes/s (default: by GPU)")
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=("bfloat16", "float32"),
        help="weights, compute and KV cache in qwen2.5-1.5b mode (float32 runs on CPU)",
    )
    parser.add_argument(
        "--decode_loop",
        choices=tuple(DECODE_LOOPS),
        default=SamplingSettings.decode_loop,
        help="how decode steps run the layers (auto: unrolled on CPU, scanned elsewhere)",
    )
    parser.add_argument(
        "--cache_phases",
        type=int,
        default=SamplingSettings.cache_phases,
        help="decode loops over a growing cache",
    )
    parser.add_argument(
        "--measure_peak", action="store_true", help="also time a 4 GiB copy on the device"
    )
    parser.add_argument(
        "--profile", default="", help="trace one more call into this folder, print a summary"
    )
    args = parser.parse_args(argv)
    args.unroll_layers = unrolls(args.decode_loop, jax.default_backend())
    if args.shapes == "tiny":
        args.batch = args.batch or 4
        result = run_tiny(args)
    else:
        args.batch = args.batch or 16
        if args.batch * args.samples < 64:
            parser.error("--shapes qwen2.5-1.5b needs batch x samples >= 64 rows")
        result = run_real_shapes(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
