"""Fixtures for the reward tests: tokenizers with host and device byte tables."""

from __future__ import annotations

import pytest

from reczero_jax.text import load_tokenizer, token_byte_table
from reczero_jax.text.tiny_tokenizer import build_tiny_tokenizer
from tests.rewards.scorer import QWEN_MODEL_VOCAB, Scorer


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny_tokenizer_rewards"))


@pytest.fixture(scope="session")
def tiny(tiny_dir) -> Scorer:
    tok = load_tokenizer(tiny_dir)
    return Scorer(tok, token_byte_table(tok, len(tok)))  # the CLI's table: shares compiles


@pytest.fixture(scope="session")
def qwen(qwen_tokenizer_dir) -> Scorer:
    tok = load_tokenizer(qwen_tokenizer_dir)
    return Scorer(tok, token_byte_table(tok, QWEN_MODEL_VOCAB))


@pytest.fixture(scope="session", params=["tiny", "qwen"])
def scorer(request) -> Scorer:
    """Each available tokenizer's Scorer (the Qwen one skips without ../shared)."""
    return request.getfixturevalue(request.param)
