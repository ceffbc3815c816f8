"""Shared fixtures of the HF interop tests: tiny checkpoints built once per session."""

from __future__ import annotations

import pathlib

import pytest

from tests.fixtures.hf_models import make_tiny_hf_model

SHARDED_KIND = "llama_sharded"  # the 'llama' model saved in several files with an index


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory):
    """``tiny_hf_dir(kind) -> Path``: a tiny random checkpoint, built on first use."""
    root = tmp_path_factory.mktemp("tiny_hf")
    built: dict[str, pathlib.Path] = {}

    def get(kind: str) -> pathlib.Path:
        if kind not in built:
            if kind == SHARDED_KIND:
                built[kind] = make_tiny_hf_model("llama", root / kind, max_shard_size=100_000)
            else:
                built[kind] = make_tiny_hf_model(kind, root / kind)
        return built[kind]

    return get
