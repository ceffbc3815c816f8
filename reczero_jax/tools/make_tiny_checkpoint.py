"""Writes a tiny random Qwen2-style checkpoint and tokenizer (``reczero_jax.hf.tiny``).

python -m reczero_jax.tools.make_tiny_checkpoint --out_dir /tmp/tiny_qwen2 [--seed 0]
"""

from __future__ import annotations

import argparse
import sys

from reczero_jax.hf.tiny import make_tiny_checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out_dir", required=True, help="folder to write the checkpoint into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = make_tiny_checkpoint(args.out_dir, args.seed)
    print(f"wrote a tiny random checkpoint to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
