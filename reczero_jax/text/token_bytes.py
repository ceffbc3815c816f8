"""Exact per-token UTF-8 byte table for a tokenizer.

``token_byte_table(tokenizer, vocab_size)`` gives, for every model vocabulary id, the bytes
that the token contributes to the decoded byte stream. For byte-level BPE tokenizers
(GPT-2, Qwen2/2.5, Llama 3) the table is exact, including tokens that are partial UTF-8
sequences (e.g. one of the three bytes of a CJK character): concatenating the rows of
``tokenizer.encode(text)`` gives exactly ``text.encode("utf-8")``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["TokenBytes", "bytes_to_unicode", "decode_bytes", "is_byte_level", "token_byte_table"]

_HEX_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@dataclasses.dataclass(frozen=True, eq=False)
class TokenBytes:
    """Byte content of every id of a model vocabulary.

    Attributes:
      bytes_vm: int32 [V, M], row v holds the bytes (0..255) of token v, padded with -1.
        M is the longest token in bytes (at least 1).
      lengths_v: int32 [V], number of valid bytes in each row (0 for unused/padding ids).
    """

    bytes_vm: np.ndarray
    lengths_v: np.ndarray

    @property
    def vocab_size(self) -> int:
        return int(self.bytes_vm.shape[0])

    @property
    def max_token_bytes(self) -> int:
        return int(self.bytes_vm.shape[1])

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one id (b"" for ids outside ``[0, V)``)."""
        if not 0 <= token_id < self.vocab_size:
            return b""
        n = int(self.lengths_v[token_id])
        return bytes(self.bytes_vm[token_id, :n].astype(np.uint8).tolist())


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character map (256 entries)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


@functools.cache
def _unicode_to_byte() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def _byte_level_token_bytes(token: str) -> bytes:
    """Invert the byte-level alphabet; tokens with foreign chars decode as raw UTF-8.

    This matches the ``tokenizers`` ByteLevel decoder, which falls back to the token's raw
    UTF-8 when any character is outside the byte alphabet.
    """
    table = _unicode_to_byte()
    try:
        return bytes(table[c] for c in token)
    except KeyError:
        return token.encode("utf-8")


def _sentencepiece_token_bytes(token: str) -> bytes:
    match = _HEX_BYTE.match(token)
    if match:
        return bytes([int(match.group(1), 16)])
    return token.replace("▁", " ").encode("utf-8")


def _backend(tokenizer):
    return getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)


def _base_vocab(tokenizer) -> Mapping[str, int]:
    """Token string -> id for the model vocabulary, without added tokens."""
    backend = _backend(tokenizer)
    if backend is not None and hasattr(backend, "get_vocab"):
        return backend.get_vocab(with_added_tokens=False)
    added = {str(t) for t in _added_tokens(tokenizer).values()}
    return {tok: i for tok, i in tokenizer.get_vocab().items() if tok not in added}


def _added_tokens(tokenizer) -> Mapping[int, object]:
    return dict(getattr(tokenizer, "added_tokens_decoder", {}) or {})


def is_byte_level(tokenizer) -> bool:
    """True when the tokenizer is a byte-level BPE (GPT-2 / Qwen style).

    Checks the backend decoder / pre-tokenizer for a ``ByteLevel`` component; without a
    backend (slow tokenizers), checks that every base-vocab character is in GPT-2's
    byte alphabet.
    """
    backend = _backend(tokenizer)
    if backend is not None:
        parts = f"{backend.decoder!r} {backend.pre_tokenizer!r}"
        if "ByteLevel" in parts:
            return True
        if backend.decoder is not None or backend.pre_tokenizer is not None:
            return False
    alphabet = _unicode_to_byte()
    vocab = _base_vocab(tokenizer)
    return bool(vocab) and all(c in alphabet for tok in vocab for c in tok)


def _fill(bytes_list: list[bytes], vocab_size: int) -> TokenBytes:
    width = max(1, max((len(b) for b in bytes_list), default=0))
    lengths = np.zeros((vocab_size,), dtype=np.int32)
    flat = np.full((vocab_size, width), -1, dtype=np.int32)
    for i, b in enumerate(bytes_list):
        if b:
            lengths[i] = len(b)
            flat[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    return TokenBytes(bytes_vm=flat, lengths_v=lengths)


def token_byte_table(tokenizer, vocab_size: int) -> TokenBytes:
    """Build the byte table for ids ``0 .. vocab_size - 1``.

    Args:
      tokenizer: a transformers tokenizer (fast tokenizers are handled exactly).
      vocab_size: the MODEL's vocabulary size (rows of the embedding); must be at least
        ``len(tokenizer)``. Ids ``len(tokenizer) .. vocab_size - 1`` (embedding padding) and
        ids unknown to the tokenizer map to zero bytes.

    Returns:
      TokenBytes with ``bytes_vm: int32 [vocab_size, M]`` and ``lengths_v: int32 [vocab_size]``.

    Byte-level tokenizers: base tokens are mapped through the inverse of GPT-2's
    ``bytes_to_unicode`` (exact, also for partial UTF-8 tokens); added/special tokens map to
    the UTF-8 bytes of their literal content (e.g. b"<|im_end|>"). Exact means: the rows of
    ``tokenizer.encode(text)`` concatenate to the text AFTER the tokenizer's normalizer (Qwen2
    applies NFC, so that is ``unicodedata.normalize("NFC", text)``).

    Other tokenizers (fallback, sentencepiece style): ``<0xNN>`` byte-fallback tokens map to
    that byte, other tokens to their UTF-8 with ``▁`` replaced by a space. Limits: the
    leading space that a sentencepiece decoder strips at the start of a text is kept;
    normalizers (e.g. NFKC, lowercasing) are not inverted; WordPiece ``##`` continuations
    and other decoders are not modelled. The table is then only approximately the
    decoded text.
    """
    if not isinstance(vocab_size, int | np.integer) or isinstance(vocab_size, bool):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    n_tok = len(tokenizer)
    if vocab_size < n_tok:
        raise ValueError(
            f"vocab_size={vocab_size} is smaller than the tokenizer's {n_tok} tokens; "
            "the model vocabulary must cover every token id"
        )
    byte_level = is_byte_level(tokenizer)
    token_of = _byte_level_token_bytes if byte_level else _sentencepiece_token_bytes
    bytes_list: list[bytes] = [b""] * int(vocab_size)
    for tok, idx in _base_vocab(tokenizer).items():
        if 0 <= idx < vocab_size:
            bytes_list[idx] = token_of(tok)
    for idx, added in _added_tokens(tokenizer).items():
        if 0 <= idx < vocab_size:
            content = getattr(added, "content", str(added))
            hex_byte = None if byte_level else _HEX_BYTE.match(content)
            if hex_byte:
                bytes_list[idx] = bytes([int(hex_byte.group(1), 16)])
            else:
                bytes_list[idx] = content.encode("utf-8")
    return _fill(bytes_list, int(vocab_size))


def decode_bytes(table: TokenBytes, ids: Iterable[int]) -> bytes:
    """Concatenate the bytes of ``ids`` (ids outside ``[0, V)`` contribute nothing)."""
    return b"".join(table.token_bytes(int(i)) for i in ids)
