"""Text utilities: tokenizer loading, exact token byte tables, and jnp stop-string detection."""

from reczero_jax.text.stop_strings import StopStrings, first_stop_index, init_window, update
from reczero_jax.text.token_bytes import (
    TokenBytes,
    bytes_to_unicode,
    decode_bytes,
    is_byte_level,
    token_byte_table,
)
from reczero_jax.text.tokenizer import (
    TokenizerError,
    encode_chat,
    encode_text,
    eos_token_ids,
    load_tokenizer,
    pad_token_id,
)

__all__ = [
    "StopStrings",
    "TokenBytes",
    "TokenizerError",
    "bytes_to_unicode",
    "decode_bytes",
    "encode_chat",
    "encode_text",
    "eos_token_ids",
    "first_stop_index",
    "init_window",
    "is_byte_level",
    "load_tokenizer",
    "pad_token_id",
    "token_byte_table",
    "update",
]
