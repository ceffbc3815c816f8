"""A tiny random Qwen2-style checkpoint with its tokenizer, built offline.

The folder holds ``config.json``, ``model.safetensors`` and the tokenizer files, so that
both transformers and ``reczero_jax`` load it. The weights are random: the text it
generates is noise, but every code path (loading, sharding, sampling) is exercised.
``python -m reczero_jax.tools.make_tiny_checkpoint`` is its command line.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import jax

from reczero_jax import sharding
from reczero_jax.hf.checkpoint import export_hf
from reczero_jax.model.model_config import ModelConfig
from reczero_jax.model.params import init_params
from reczero_jax.text.tiny_tokenizer import build_tiny_tokenizer
from reczero_jax.text.tokenizer import load_tokenizer


def tiny_config(vocab_size: int, eos_id: int, pad_id: int, **overrides) -> ModelConfig:
    """A 4-layer, width-64 Qwen2 architecture (about 0.2M parameters with vocab 1024)."""
    fields = dict(
        model_type="qwen2",
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_layers=4,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        qkv_bias=True,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        max_position_embeddings=4096,
        bos_token_id=pad_id,
        eos_token_ids=(eos_id,),
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def make_tiny_checkpoint(out_dir: str | os.PathLike, seed: int = 0, **overrides) -> pathlib.Path:
    """Writes tokenizer + random weights into ``out_dir`` (local or remote) and returns it."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir = build_tiny_tokenizer(pathlib.Path(tmp) / "tokenizer")
        tokenizer = load_tokenizer(tokenizer_dir)
        vocab = -(-len(tokenizer) // 128) * 128
        config = tiny_config(vocab, tokenizer.eos_token_id, tokenizer.pad_token_id, **overrides)
        mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
        params = init_params(config, mesh, sharding.SAMPLE_RULES, jax.random.key(seed))
        return export_hf(params, config, out_dir, tokenizer_dir=tokenizer_dir)
