"""Checks that our decoder reproduces transformers' logits for a HF checkpoint.

    python -m reczero_jax.tools.hf_parity --hf_dir DIR [--roundtrip] [--dtype float32|bfloat16]
        [--tol X] [--batch 2] [--length 16] [--seed 0]

Runs one batch of random token ids (the last row left-padded, with an attention mask)
through transformers (PyTorch, CPU, eval) and through our model loaded with
``load_hf_params``, in the same dtype, and prints the max |logit difference| over real
tokens. Positions count real tokens only (``cumsum(mask) - 1``, clipped at 0) on both sides.
``--roundtrip`` also exports our params with ``export_hf`` to a temporary folder, reloads
that with transformers and compares again. Exit status: 0 within ``--tol``, 1 above it,
2 for a missing or unreadable checkpoint.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

import numpy as np

DEFAULT_TOL = {"float32": 1e-4, "bfloat16": 5e-2}


def make_batch(vocab_size: int, batch: int, length: int, seed: int):
    """Random tokens int64 [B, T] and mask bool [B, T]; the last row (when B > 1) is
    left-padded by a third of T (pad id 0)."""
    rng = np.random.default_rng(seed)
    tokens_bt = rng.integers(0, vocab_size, (batch, length), dtype=np.int64)
    mask_bt = np.ones((batch, length), bool)
    if batch > 1:
        pad = max(1, length // 3)
        mask_bt[-1, :pad] = False
        tokens_bt[-1, :pad] = 0
    return tokens_bt, mask_bt


def positions(mask_bt: np.ndarray) -> np.ndarray:
    """RoPE positions int64 [B, T]: real tokens counted from 0."""
    return np.maximum(np.cumsum(mask_bt, axis=-1) - 1, 0)


def hf_logits(hf_dir, dtype: str, tokens_bt: np.ndarray, mask_bt: np.ndarray) -> np.ndarray:
    """float32 [B, T, V] logits from transformers' model of ``hf_dir``."""
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch_dtype).eval()
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(tokens_bt),
            attention_mask=torch.from_numpy(mask_bt.astype(np.int64)),
            position_ids=torch.from_numpy(positions(mask_bt)),
        )
    return out.logits.float().numpy()


def max_diff(a_btv: np.ndarray, b_btv: np.ndarray, mask_bt: np.ndarray) -> float:
    """max |a - b| over real-token positions."""
    return float(np.abs(a_btv - b_btv)[mask_bt].max())


def run(args: argparse.Namespace) -> int:
    import jax.numpy as jnp

    from reczero_jax.hf.checkpoint import export_hf, load_hf_params
    from reczero_jax.model.decoder import compute_logits
    from reczero_jax.model.model_config import ModelConfig

    config = ModelConfig.from_hf_dir(args.hf_dir)
    jnp_dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[args.dtype]
    tol = DEFAULT_TOL[args.dtype] if args.tol is None else args.tol
    tokens_bt, mask_bt = make_batch(config.vocab_size, args.batch, args.length, args.seed)

    params = load_hf_params(args.hf_dir, config, dtype=jnp_dtype)
    ours_btv = np.asarray(compute_logits(config, params, tokens_bt, mask_bt, dtype=jnp_dtype))
    diffs = {
        "hf": max_diff(ours_btv, hf_logits(args.hf_dir, args.dtype, tokens_bt, mask_bt), mask_bt)
    }
    print(f"max |logit diff| ours vs transformers ({args.dtype}): {diffs['hf']:.3e}")
    if args.roundtrip:
        with tempfile.TemporaryDirectory(prefix="hf_parity_") as tmp:
            export_hf(params, config, tmp, dtype=args.dtype)
            theirs_btv = hf_logits(tmp, args.dtype, tokens_bt, mask_bt)
        diffs["roundtrip"] = max_diff(ours_btv, theirs_btv, mask_bt)
        print(f"max |logit diff| ours vs transformers on our export: {diffs['roundtrip']:.3e}")
    worst = max(diffs.values())
    if not worst <= tol:  # also catches NaN
        print(f"FAIL: {worst:.3e} > tol {tol:.1e}")
        return 1
    print(f"OK: within tol {tol:.1e}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hf_parity", description=__doc__.split("\n")[0])
    parser.add_argument("--hf_dir", required=True, type=pathlib.Path)
    parser.add_argument("--roundtrip", action="store_true")
    parser.add_argument("--dtype", choices=sorted(DEFAULT_TOL), default="float32")
    parser.add_argument("--tol", type=float, default=None, help="default: 1e-4 f32, 5e-2 bf16")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.batch < 1 or args.length < 2:
        parser.error("--batch must be >= 1 and --length >= 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from reczero_jax.hf.checkpoint import HFCheckpointError
    from reczero_jax.model.model_config import ModelConfigError

    if not args.hf_dir.is_dir():
        print(f"hf_parity: error: --hf_dir {args.hf_dir} is not a folder", file=sys.stderr)
        return 2
    try:
        return run(args)
    except (HFCheckpointError, ModelConfigError, ValueError, OSError) as e:
        one_line = " ".join(line.strip() for line in str(e).splitlines()) or type(e).__name__
        print(f"hf_parity: error: {one_line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
