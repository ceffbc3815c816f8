#!/usr/bin/env bash
# The GPU figures of README's "On an NVIDIA GPU", in one run on one NVIDIA GPU:
#
#   bash benchmarks/gpu.sh [OUT_DIR]        # default OUT_DIR: $OUT, else /tmp/reczero_gpu
#
# Steps, most important first, each under its own time limit and all within a total
# budget (GPU_BUDGET_S, default 500 s; a step is skipped once less than 40 s are left):
#   sampler_64      benchmarks/sampler.py --shapes qwen2.5-1.5b: 16 prompts x G 4 = 64
#                   rows, prompt 128, 128 new tokens, random bf16 weights, the sampler's
#                   defaults on a GPU (scanned layer loop, 4 cache phases); decode tokens/s
#                   and the HBM roofline fraction (also against a measured 4 GiB copy)
#   update_full     benchmarks/update.py --shapes qwen2.5-1.5b: one GRPO update at the
#                   paper's shape (8 prompts x G 8, prompt 1,536, answer 512), bf16 compute,
#                   float32 params, remat full, one micro-batch; tokens/s and MFU (also
#                   against a measured 8192^3 bf16 product)
#   update_cudnn    update_full with cuDNN's fused attention (--attention cudnn)
#   update_none     update_full with remat none in 8 micro-batches of one prompt
#   sampler_256     32 prompts x G 8 = 256 rows
#   sampler_64_unrolled   sampler_64 with the decode's layer loop unrolled
#   sampler_64_one_loop   sampler_64 in one decode loop (--cache_phases 1): what the
#                   default 4 cache phases gain on a GPU
#   gpu_tests       the model's correctness tests on the GPU (cuDNN's attention in bf16
#                   against the einsum kernels; decode cache, grouped forward and fused
#                   projections in float32 at highest matmul precision)
# update_cudnn and sampler_64_unrolled also trace one more call (--profile; traces under
# $TMPDIR/reczero_gpu_traces) and log where the GPU time went (benchmarks/trace_summary.py).
# Outputs in OUT_DIR: gpu.log (everything), results.jsonl (each benchmark's JSON line,
# with its step name), and a Markdown table printed last (made from results.jsonl).
set -u
out=${1:-${OUT:-/tmp/reczero_gpu}}
mkdir -p "$out"
log=$out/gpu.log
results=$out/results.jsonl
: >"$results"
budget=${GPU_BUDGET_S:-500}
start=$(date +%s)
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

{
  echo "== $(date -u +%FT%TZ) $(hostname)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  "$py" -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, jax.devices())'
} 2>&1 | tee -a "$log"

step() { # name limit_s command...: runs command, keeps its last line when it is JSON
  local name=$1 limit=$2
  shift 2
  local left=$((budget - ($(date +%s) - start)))
  if ((left < 40)); then
    echo "== $name: skipped, ${left}s of the budget left" | tee -a "$log"
    return
  fi
  ((limit > left)) && limit=$left
  echo "== $name (limit ${limit}s): $*" | tee -a "$log"
  local tick
  tick=$(date +%s)
  timeout "$limit" "$@" >"$out/$name.tmp" 2>&1
  local rc=$?
  cat "$out/$name.tmp" >>"$log"
  local last
  last=$(tail -n 1 "$out/$name.tmp")
  rm -f "$out/$name.tmp"
  echo "== $name: rc $rc in $(($(date +%s) - tick))s" | tee -a "$log"
  if [[ $last == "{"* ]]; then
    "$py" -c 'import json,sys; d=json.loads(sys.argv[2]); d["step"]=sys.argv[1]; print(json.dumps(d))' \
      "$name" "$last" | tee -a "$results"
  else
    echo "$last" | cut -c1-400
  fi
}

s15=(--shapes qwen2.5-1.5b)
step sampler_64 150 "$py" benchmarks/sampler.py "${s15[@]}" --batch 16 --samples 4 --measure_peak
step update_full 150 "$py" benchmarks/update.py "${s15[@]}" --measure_peak
traces=${TMPDIR:-/tmp}/reczero_gpu_traces
step update_cudnn 150 "$py" benchmarks/update.py "${s15[@]}" --attention cudnn \
  --profile "$traces/update_cudnn"
step update_none 120 "$py" benchmarks/update.py "${s15[@]}" --remat none --micro_groups 1
step sampler_256 80 "$py" benchmarks/sampler.py "${s15[@]}" --batch 32 --samples 8
step sampler_64_unrolled 100 "$py" benchmarks/sampler.py "${s15[@]}" --batch 16 --samples 4 \
  --decode_loop unrolled --profile "$traces/sampler_64_unrolled"
step sampler_64_one_loop 80 "$py" benchmarks/sampler.py "${s15[@]}" --batch 16 --samples 4 \
  --cache_phases 1
step gpu_tests 90 env JAX_PLATFORMS=cuda JAX_DEFAULT_MATMUL_PRECISION=highest \
  "$py" -m pytest -q -p no:cacheprovider tests/model/test_dpa_attention.py \
  tests/model/test_decode.py tests/model/test_grouped.py tests/model/test_fused_and_unrolled.py \
  tests/model/test_vocab_projection.py

"$py" benchmarks/gpu_table.py "$results" | tee -a "$log"
