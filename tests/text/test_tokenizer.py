"""Tokenizer loading, chat templates, eos/pad ids."""

from __future__ import annotations

import json

import pytest

from reczero_jax.text import (
    TokenizerError,
    encode_chat,
    encode_text,
    eos_token_ids,
    load_tokenizer,
    pad_token_id,
)
from tests.fixtures.tokenizer import build_tiny_tokenizer


def test_missing_folder_names_path(tmp_path):
    missing = tmp_path / "no_such_tokenizer"
    with pytest.raises(TokenizerError, match="no_such_tokenizer"):
        load_tokenizer(missing)
    assert issubclass(TokenizerError, ValueError)


def test_file_instead_of_folder(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text("{}")
    with pytest.raises(TokenizerError, match="not a folder"):
        load_tokenizer(path)


def test_unreadable_folder_names_path(tmp_path):
    bad = tmp_path / "broken_tok"
    bad.mkdir()
    (bad / "tokenizer_config.json").write_text("{ not json")
    with pytest.raises(TokenizerError, match="broken_tok"):
        load_tokenizer(bad)


def test_empty_folder_names_path(tmp_path):
    empty = tmp_path / "empty_tok"
    empty.mkdir()
    with pytest.raises(TokenizerError, match="empty_tok"):
        load_tokenizer(empty)


def test_tiny_tokenizer_is_deterministic(tmp_path, tiny_tokenizer_dir):
    again = build_tiny_tokenizer(tmp_path / "again")
    assert (again / "tokenizer.json").read_bytes() == (
        tiny_tokenizer_dir / "tokenizer.json"
    ).read_bytes()


def test_tiny_tokenizer_basics(tiny_tokenizer):
    tok = tiny_tokenizer
    assert 512 <= len(tok) <= 1024
    assert tok.convert_tokens_to_ids("<|endoftext|>") == tok.pad_token_id
    assert tok.eos_token == "<|im_end|>"
    assert pad_token_id(tok) == tok.pad_token_id
    assert eos_token_ids(tok) == (tok.eos_token_id,)
    ids = encode_text(tok, "<rate>4.5</rate>")
    assert tok.decode(ids) == "<rate>4.5</rate>"
    im_end = encode_text(tok, "hi<|im_end|>")
    assert im_end[-1] == tok.eos_token_id


def test_tiny_chat_template(tiny_tokenizer):
    tok = tiny_tokenizer
    ids = encode_chat(tok, "Rate it.", system="Be brief.")
    expected = (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nRate it.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert tok.decode(ids) == expected
    assert ids == encode_text(tok, expected)
    no_prompt = encode_chat(tok, "Rate it.", add_generation_prompt=False)
    assert tok.decode(no_prompt) == "<|im_start|>user\nRate it.<|im_end|>\n"


def test_eos_from_generation_config(tiny_tokenizer, tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [7, 2, 7]}))
    assert eos_token_ids(tiny_tokenizer, tmp_path) == (2, 7)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 9}))
    assert eos_token_ids(tiny_tokenizer, tmp_path) == (2, 9)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": "x"}))
    with pytest.raises(TokenizerError, match="eos_token_id"):
        eos_token_ids(tiny_tokenizer, tmp_path)
    assert eos_token_ids(tiny_tokenizer, tmp_path / "absent") == (2,)


def test_qwen_chat_template(qwen_tokenizer, qwen_tokenizer_dir):
    tok = qwen_tokenizer
    ids = encode_chat(tok, "Hi")
    assert tok.decode(ids) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
        "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert ids[0] == 151644 and ids[-3:] == [151644, 77091, 198]
    custom = encode_chat(tok, "Hi", system="S")
    assert tok.decode(custom).startswith("<|im_start|>system\nS<|im_end|>\n")
    assert eos_token_ids(tok) == (151645,)
    assert eos_token_ids(tok, qwen_tokenizer_dir) == (151645, 151643)
    assert pad_token_id(tok) == 151643
    assert encode_text(tok, "Hello world") == [9707, 1879]
