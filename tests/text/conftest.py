"""Session fixtures for the text tests: the tiny tokenizer, the Qwen2.5 tokenizer, byte tables."""

from __future__ import annotations

import pathlib

import pytest

from reczero_jax.text import load_tokenizer, token_byte_table
from tests.fixtures.tokenizer import build_tiny_tokenizer

TINY_MODEL_VOCAB = 1024
QWEN_MODEL_VOCAB = 151936  # Qwen2.5-1.5B embedding rows (padded past len(tokenizer) = 151665)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> pathlib.Path:
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny_tokenizer"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir):
    return load_tokenizer(tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_table(tiny_tokenizer):
    return token_byte_table(tiny_tokenizer, TINY_MODEL_VOCAB)


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_tokenizer_dir):
    return load_tokenizer(qwen_tokenizer_dir)


@pytest.fixture(scope="session")
def qwen_table(qwen_tokenizer):
    return token_byte_table(qwen_tokenizer, QWEN_MODEL_VOCAB)


@pytest.fixture(scope="session", params=["tiny", "qwen"])
def tok_and_table(request):
    """(tokenizer, TokenBytes) for each available tokenizer; the Qwen case skips when absent."""
    if request.param == "tiny":
        return request.getfixturevalue("tiny_tokenizer"), request.getfixturevalue("tiny_table")
    return request.getfixturevalue("qwen_tokenizer"), request.getfixturevalue("qwen_table")
