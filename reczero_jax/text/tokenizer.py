"""Loading a local Hugging Face tokenizer and encoding prompts with its chat template.

A tokenizer without a chat template (a base model's) gets :data:`RAW_TEXT_CHAT_TEMPLATE`
when it is loaded, with a warning: chat prompts then fall back to raw text, the system
message, a blank line and the user message, which is what ``data.prompt.mode='raw'``
renders with its default ``raw_template``.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib

from reczero_jax import paths

__all__ = [
    "RAW_TEXT_CHAT_TEMPLATE",
    "TokenizerError",
    "check_tokenizer_dir",
    "encode_chat",
    "encode_text",
    "ensure_chat_template",
    "eos_token_ids",
    "load_tokenizer",
    "pad_token_id",
]

# Each message's text, a blank line after the system message and a newline after the others;
# no generation prompt. [system S, user U] -> "S\n\nU\n" (prompt.mode='raw', default template).
RAW_TEXT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- message['content'] -}}"
    "{%- if message['role'] == 'system' -%}{{- '\n\n' -}}{%- else -%}{{- '\n' -}}{%- endif -%}"
    "{%- endfor -%}"
)
# Files one of which a Hugging Face tokenizer folder holds.
TOKENIZER_FILE_PATTERNS = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "*.tiktoken",
)
_log = logging.getLogger(__name__)  # under the project's logger: terminal and log.txt
_EXPECTED = (
    "expected a Hugging Face tokenizer folder holding tokenizer.json or tokenizer_config.json"
)


class TokenizerError(ValueError):
    """A tokenizer folder is missing/unreadable, or a tokenizer lacks what is asked of it."""


def _folder(tokenizer) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or "<in-memory tokenizer>")


def _require_folder(folder, shown: str) -> None:
    """TokenizerError starting with ``shown`` unless ``folder`` is an existing folder."""
    if not folder.exists():
        raise TokenizerError(f"{shown} does not exist ({_EXPECTED})")
    if not folder.is_dir():
        raise TokenizerError(f"{shown} is not a folder ({_EXPECTED})")


def check_tokenizer_dir(path: str | os.PathLike, key: str = "config.model.tokenizer_dir") -> None:
    """Raises TokenizerError, naming ``key`` and the path, unless ``path`` (local or remote)
    is a folder holding tokenizer files; reads nothing but the folder's listing."""
    folder = paths.as_path(path)
    _require_folder(folder, f"{key}: {path}")
    if not any(any(folder.glob(pattern)) for pattern in TOKENIZER_FILE_PATTERNS):
        raise TokenizerError(
            f"{key}: {path} holds no tokenizer files ({_EXPECTED}; set "
            "config.model.tokenizer_dir to the folder that holds them)"
        )


def ensure_chat_template(tokenizer) -> bool:
    """Gives a tokenizer without a chat template :data:`RAW_TEXT_CHAT_TEMPLATE`, with a
    warning naming its folder. Returns whether it had one."""
    if getattr(tokenizer, "chat_template", None):
        return True
    _log.warning(
        "tokenizer from %s has no chat template (no 'chat_template' in tokenizer_config.json, "
        "no chat_template.jinja): chat prompts fall back to raw text (system message, blank "
        "line, user message; what data.prompt.mode='raw' renders)",
        _folder(tokenizer),
    )
    tokenizer.chat_template = RAW_TEXT_CHAT_TEMPLATE
    return False


def load_tokenizer(path: str | os.PathLike):
    """Load a tokenizer from a local folder with ``AutoTokenizer`` (never downloads).

    A tokenizer without a chat template gets the raw-text one, with a warning
    (:func:`ensure_chat_template`).

    Raises:
      TokenizerError: the folder does not exist, is not a folder, or holds no loadable
        tokenizer; the message names the folder.
    """
    folder = pathlib.Path(path).expanduser()
    _require_folder(folder, f"tokenizer folder {folder}")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises many types (OSError, ValueError, ...)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TokenizerError(f"could not load a tokenizer from {folder}: {first_line}") from exc
    if tokenizer is None or isinstance(tokenizer, bool):
        raise TokenizerError(f"could not load a tokenizer from {folder} ({_EXPECTED})")
    ensure_chat_template(tokenizer)
    return tokenizer


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added (no BOS/EOS)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return list(tokenizer.encode(text, add_special_tokens=False))


def encode_chat(
    tokenizer,
    user: str,
    system: str | None = None,
    add_generation_prompt: bool = True,
) -> list[int]:
    """Token ids of a one-turn chat rendered with the tokenizer's chat template.

    Messages are ``[system (if given), user]``; templates may add their own default system
    message (Qwen2.5 does). The rendered string is tokenized without extra special tokens,
    as ``apply_chat_template(..., tokenize=True)`` does. A tokenizer without a chat template
    renders raw text, with a warning (:func:`ensure_chat_template`).
    """
    if not isinstance(user, str):
        raise TypeError(f"user must be a str, got {type(user).__name__}")
    if system is not None and not isinstance(system, str):
        raise TypeError(f"system must be a str or None, got {type(system).__name__}")
    ensure_chat_template(tokenizer)
    messages = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": user})
    rendered = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    return encode_text(tokenizer, rendered)


def _as_id_list(value, source: str) -> list[int]:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool):
            raise TokenizerError(f"eos_token_id in {source} must be an int or a list of ints")
    return list(values)


def eos_token_ids(tokenizer, model_dir: str | os.PathLike | None = None) -> tuple[int, ...]:
    """All end-of-sequence ids: the tokenizer's ``eos_token_id`` plus ``eos_token_id``
    (int or list) from ``model_dir/generation_config.json`` when that file exists.

    Returns a de-duplicated tuple, tokenizer's id first (may be empty if neither is set).

    Raises:
      TokenizerError: generation_config.json is unreadable or its eos_token_id is malformed.
    """
    ids: list[int] = []
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.append(int(tokenizer.eos_token_id))
    if model_dir is not None:
        config_path = pathlib.Path(model_dir) / "generation_config.json"
        if config_path.is_file():
            try:
                config = json.loads(config_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise TokenizerError(f"could not read {config_path}: {exc}") from exc
            if not isinstance(config, dict):
                raise TokenizerError(f"{config_path} does not hold a JSON object")
            if config.get("eos_token_id") is not None:
                ids.extend(_as_id_list(config["eos_token_id"], str(config_path)))
    return tuple(dict.fromkeys(ids))


def pad_token_id(tokenizer) -> int:
    """The pad id: ``pad_token_id``, else ``eos_token_id``, else 0."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0
