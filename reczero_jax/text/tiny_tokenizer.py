"""A tiny byte-level BPE tokenizer with a Qwen-style chat template, trained offline.

Used by the tests, the offline quick start and the CPU demo (which passes its own corpus).

``build_tiny_tokenizer(out_dir)`` trains (well under a second) a GPT-2/Qwen-style byte-level
BPE on a small built-in corpus of review-like English with the RecZero tags, adds the Qwen
special tokens and saves a ``PreTrainedTokenizerFast`` that ``AutoTokenizer.from_pretrained``
reloads. The result is deterministic and ``len(tokenizer) <= 1024`` so a tiny model with a
1024-entry vocabulary covers it.
"""

from __future__ import annotations

import pathlib

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END)
TARGET_VOCAB_SIZE = 800

# Qwen2's pre-tokenizer split: single digits, punctuation runs that swallow following newlines.
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_REVIEWS = (
    "This movie was great, I loved the acting and the story.",
    "The plot was slow and the ending felt rushed.",
    "A wonderful book with deep characters; I would read it again.",
    "The product broke after two weeks, very disappointing.",
    "Good value for the price, works as described.",
    "I did not like the sound quality, but the design is nice.",
    "Excellent service and fast delivery. Five stars!",
    "The user enjoys science fiction, thrillers and long novels.",
    "The item is a romantic comedy with a light tone and a happy ending.",
    "They usually rate action movies highly and dislike slow dramas.",
    "Overall the match between the user and the item is strong.",
    "The user prefers cheap, durable kitchen tools over fancy gadgets.",
    "This album has catchy songs; the lyrics are simple but fun.",
    "Battery life is short, yet the screen is bright and sharp.",
)
_RATINGS = ("1", "2", "3", "3.5", "4", "4.5", "5", "2.5", "1.5", "0")


def _corpus() -> list[str]:
    """Build the fixed training corpus (deterministic order)."""
    lines: list[str] = []
    for i, review in enumerate(_REVIEWS):
        rating = _RATINGS[i % len(_RATINGS)]
        lines.append(review)
        lines.append(
            f"<analyze user>\nThe user liked: {review}\n</analyze user>\n"
            f"<analyze item>\n{_REVIEWS[(i + 3) % len(_REVIEWS)]}\n</analyze item>\n"
            f"<match>\nThe match is good because of the story.\n</match>\n"
            f"<rate>{rating}</rate>\n"
        )
        lines.append(f"User rating: {rating} out of 5. Item rating: {rating}/5.")
    lines.append("Numbers: 0 1 2 3 4 5 6 7 8 9 4.5 3.5 10 100 2024\n\n")
    lines.append("Hello world! How are you? It's fine, they're here, we've done it.")
    return lines


def build_tiny_tokenizer(
    out_dir: pathlib.Path,
    corpus: list[str] | None = None,
    vocab_size: int = TARGET_VOCAB_SIZE,
) -> pathlib.Path:
    """Train the tiny tokenizer and save it (with chat template) into ``out_dir``.

    ``corpus`` replaces the built-in review-like corpus; ``vocab_size`` is the BPE target.
    Returns ``out_dir``. The special tokens get ids 0 (``<|endoftext|>``, pad), 1
    (``<|im_start|>``) and 2 (``<|im_end|>``, eos); the 256 byte symbols follow.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus() if corpus is None else list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))
    return out_dir
