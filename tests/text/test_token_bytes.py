"""Exactness of the token byte table."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from reczero_jax.text import bytes_to_unicode, decode_bytes, is_byte_level, token_byte_table
from tests.text.strategies import texts


def _expected(tokenizer, text: str) -> bytes:
    """What the ids of ``text`` must decode to: the text after the tokenizer's normalizer."""
    normalizer = tokenizer.backend_tokenizer.normalizer
    if normalizer is not None:
        assert repr(normalizer) == "NFC()", repr(normalizer)
        text = unicodedata.normalize("NFC", text)
    return text.encode("utf-8")


def test_bytes_to_unicode_is_a_bijection():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256


def test_table_layout(tok_and_table):
    tok, table = tok_and_table
    assert is_byte_level(tok)
    assert table.bytes_vm.dtype == np.int32 and table.lengths_v.dtype == np.int32
    v, m = table.bytes_vm.shape
    assert table.lengths_v.shape == (v,)
    assert m == table.lengths_v.max() >= 1
    n = len(tok)
    assert (table.lengths_v[n:] == 0).all() and (table.bytes_vm[n:] == -1).all()
    assert (table.lengths_v[:n] > 0).all()
    cols = np.arange(m)[None, :]
    valid = cols < table.lengths_v[:, None]
    assert ((table.bytes_vm >= 0) == valid).all() and (table.bytes_vm < 256).all()
    assert table.token_bytes(tok.convert_tokens_to_ids("<|im_end|>")) == b"<|im_end|>"
    assert table.token_bytes(tok.convert_tokens_to_ids("<|endoftext|>")) == b"<|endoftext|>"
    assert decode_bytes(table, [-1, v, v + 5]) == b""


def test_vocab_size_too_small(tiny_tokenizer):
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        token_byte_table(tiny_tokenizer, 10)


def test_partial_utf8_tokens_qwen(qwen_tokenizer, qwen_table):
    ids = qwen_tokenizer.encode("😀", add_special_tokens=False)
    parts = [qwen_table.token_bytes(i) for i in ids]
    assert b"".join(parts) == "😀".encode()
    # Each single byte has its own base token, mapped through the inverse byte alphabet.
    for b in (0xC3, 0xA9, 0xF0):
        tok_id = qwen_tokenizer.convert_tokens_to_ids(bytes_to_unicode()[b])
        assert qwen_table.token_bytes(tok_id) == bytes([b])


@settings(max_examples=50, deadline=None)
@given(text=st.one_of(texts, st.text(max_size=40)))
def test_encode_bytes_roundtrip(tok_and_table, text):
    tok, table = tok_and_table
    ids = tok.encode(text, add_special_tokens=False)
    assert decode_bytes(table, ids) == _expected(tok, text)
    assert decode_bytes(table, tok.encode(text)) == _expected(tok, text)


def test_sentencepiece_style_fallback():
    """A Metaspace tokenizer is not byte-level: '▁' maps to a space, <0xNN> to a byte."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", *byte_tokens], show_progress=False
    )
    tok.train_from_iterator(["the user liked the movie", "rate the item"] * 5, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    assert not is_byte_level(fast)
    table = token_byte_table(fast, len(fast) + 3)
    text = "the user rated the item"
    assert decode_bytes(table, fast.encode(text, add_special_tokens=False)) == b" " + text.encode()
    assert table.token_bytes(fast.convert_tokens_to_ids("<0x41>")) == b"A"
