"""Compiled memory and compile time of the group sampler, per decode loop, no weights.

    python benchmarks/sampler_memory.py                     # Qwen2.5-1.5B and 7B, float32
    python benchmarks/sampler_memory.py --models qwen2.5-1.5b --prompts 8 --samples 8 \\
        --prompt_len 1536 --new_tokens 512

For each model and each decode loop (``scanned`` / ``unrolled`` over the layers, see
``sampling.decode_loop``) with one loop or 4 cache phases (``sampling.cache_phases``),
this builds the project's ``GroupSampler`` on one device, lowers it for abstract
parameters and prompts (``jax.ShapeDtypeStruct``: nothing is allocated) and compiles it:
``compile_s`` is the XLA compile time, and ``memory_analysis()`` gives the arguments
(the weights and the prompts) and XLA's temporaries (the fused or per-layer weight copies,
the prompt cache, the generated caches, the logits). ``peak = argument + temp``.

These are XLA:CPU's buffer assignments: other backends schedule and fuse differently, and
XLA:CPU converts bfloat16 products to float32 (with ``--dtype bfloat16`` the unrolled
loop's hoisted conversions show up as float32 copies of the weights), so the default is
float32. Compile times are CPU times on this machine. The LAST line printed is one JSON
object: ``rows``, one per (model, decode loop, phases).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reczero_jax import sharding
from reczero_jax.model.params import DTYPES, sharded_param_shapes
from reczero_jax.sampling.methods import Sampling
from reczero_jax.sampling.sampler import GroupSampler, SamplerSpec
from reczero_jax.tools.lower_config import SHAPES, shape_config

SETTINGS = (("scanned", 1), ("scanned", 4), ("unrolled", 1), ("unrolled", 4))
GIB = 2**30


def measure(config, loop: str, phases: int, b: int, g: int, p: int, t: int, dtype) -> dict:
    """One sampler compiled for B prompts x G answers of T new tokens to P-token prompts."""
    mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), ("data", "fsdp", "tensor"))
    spec = SamplerSpec(
        max_new_tokens=t,
        method=Sampling(1.0),
        eos_ids=(),
        pad_id=0,
        buckets=(p,),
        unroll_layers=loop == "unrolled",
        cache_phases=phases,
    )
    sampler = GroupSampler(config, mesh, spec, dtype=dtype)
    params = sharded_param_shapes(config, mesh, sharding.SAMPLE_RULES, dtype)
    row = NamedSharding(mesh, PartitionSpec(sharding.BATCH_AXES))
    tokens = jax.ShapeDtypeStruct((b, p), jnp.int32, sharding=row)
    valid = jax.ShapeDtypeStruct((b, p), jnp.bool_, sharding=row)
    lowered = sampler.lower(params, tokens, valid, jax.random.key(0), g)
    start = time.perf_counter()
    memory = lowered.compile().memory_analysis()
    compile_s = time.perf_counter() - start
    argument, temp = memory.argument_size_in_bytes, memory.temp_size_in_bytes
    return {
        "decode_loop": loop,
        "cache_phases": phases,
        "compile_s": round(compile_s, 2),
        "argument_gib": round(argument / GIB, 3),
        "temp_gib": round(temp / GIB, 3),
        "peak_gib": round((argument + temp) / GIB, 3),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| model | decode loop | cache phases | compile s | weights + prompts GiB | "
        "temporaries GiB | peak GiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['decode_loop']} | {r['cache_phases']} | {r['compile_s']:.1f} "
            f"| {r['argument_gib']:.2f} | {r['temp_gib']:.2f} | {r['peak_gib']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=list(SHAPES)[::-1], choices=[*SHAPES, "tiny"]
    )
    parser.add_argument("--prompts", type=int, default=8, help="prompts B")
    parser.add_argument("--samples", type=int, default=8, help="answers per prompt G")
    parser.add_argument("--prompt_len", type=int, default=1536)
    parser.add_argument("--new_tokens", type=int, default=512)
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    args = parser.parse_args(argv)
    dtype = DTYPES[args.dtype]
    rows = []
    for name in args.models:
        config = tiny_config() if name == "tiny" else shape_config(name)
        for loop, phases in SETTINGS:
            shape = (args.prompts, args.samples, args.prompt_len, args.new_tokens)
            rows.append({"model": name, **measure(config, loop, phases, *shape, dtype)})
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    result = {
        "shape": dict(
            prompts=args.prompts,
            samples=args.samples,
            prompt_len=args.prompt_len,
            new_tokens=args.new_tokens,
        ),
        "dtype": args.dtype,
        "device": jax.devices()[0].device_kind,
        "rows": rows,
    }
    print(json.dumps(result))
    return result


def tiny_config():
    """The benchmarks' tiny Qwen2 (``benchmarks/update.py``'s TINY), for quick checks."""
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from update import TINY

    from reczero_jax.model.model_config import ModelConfig

    return ModelConfig(**TINY)


if __name__ == "__main__":
    main()
