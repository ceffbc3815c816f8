"""Prompts: tags, chat / raw modes, variants and the token budget."""

import dataclasses
import re

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from reczero_jax.data.data_config import DataConfig, PromptConfig, SyntheticConfig
from reczero_jax.data.loader import load_data
from reczero_jax.data.prompts import (
    FOUR_STEP_TAGS,
    INSTRUCTIONS,
    PromptTooLongError,
    build_prompt,
    format_inputs,
    render,
)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    """One token per whitespace / punctuation piece (all [UNK]: only lengths matter)."""
    data = load_data(DataConfig(synthetic=SyntheticConfig(num_users=60, num_items=30)))
    tok = Tokenizer(models.WordLevel(vocab={"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    fast.chat_template = CHAT_TEMPLATE
    return fast, data


def test_instruction_tags():
    four = INSTRUCTIONS["four_step"]
    positions = [four.index(t) for t in FOUR_STEP_TAGS]
    assert positions == sorted(positions)
    for tag in FOUR_STEP_TAGS:
        assert four.count(tag) == 1
    assert "<rate>" in INSTRUCTIONS["rating_only"] and "<match>" not in INSTRUCTIONS["rating_only"]
    assert "<think>" in INSTRUCTIONS["single_think"]


def test_chat_and_raw_modes(tokenizer):
    tok, data = tokenizer
    e = data.examples["test"][0]
    chat = build_prompt(e, tok, PromptConfig())
    assert chat.text.startswith("<|system|>\n" + INSTRUCTIONS["four_step"])
    assert "<|user|>\nUser history" in chat.text and chat.text.endswith("<|assistant|>\n")
    raw = build_prompt(e, tok, PromptConfig(mode="raw", variant="rating_only"))
    assert raw.text == INSTRUCTIONS["rating_only"] + "\n\n" + format_inputs(e) + "\n"
    assert raw.num_history_dropped == 0 and len(raw.token_ids) > 0


def _tagged(e):
    """The example with every review replaced by a unique marker 'uN' / 'iN'."""
    return dataclasses.replace(
        e,
        user_history=tuple(
            dataclasses.replace(h, review=f"u{n}") for n, h in enumerate(e.user_history)
        ),
        item_history=tuple(
            dataclasses.replace(h, review=f"i{n}") for n, h in enumerate(e.item_history)
        ),
    )


def test_budget_drops_oldest_first(tokenizer):
    tok, data = tokenizer
    e = _tagged(max(data.examples["test"], key=lambda x: len(x.user_history) + len(x.item_history)))
    full = build_prompt(e, tok, PromptConfig())
    budget = len(full.token_ids) - 20
    cut = build_prompt(e, tok, PromptConfig(max_prompt_tokens=budget))
    k = cut.num_history_dropped
    assert k > 0 and len(cut.token_ids) <= budget
    one_less = render(INSTRUCTIONS["four_step"], format_inputs(e, k - 1), PromptConfig(), tok)
    assert len(tok(one_less, add_special_tokens=False)["input_ids"]) > budget  # k is minimal
    entries = sorted(
        [(h.timestamp, 1, h.review) for h in e.user_history]
        + [(h.timestamp, 0, h.review) for h in e.item_history]
    )
    markers = re.findall(r"\| ([ui]\d+)$", cut.text.split("<|assistant|>")[0], re.M)
    assert sorted(markers) == sorted(m for _, _, m in entries[k:])
    assert e.item_title in cut.text and INSTRUCTIONS["four_step"] in cut.text
    with pytest.raises(PromptTooLongError, match="max_prompt_tokens=5"):
        build_prompt(e, tok, PromptConfig(max_prompt_tokens=5))


def test_chat_mode_needs_template(tokenizer):
    tok, data = tokenizer
    plain = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, unk_token="[UNK]")
    with pytest.raises(ValueError, match="chat template"):
        build_prompt(data.examples["test"][0], plain, PromptConfig())


def test_qwen_tokenizer(qwen_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir))
    data = load_data(DataConfig(synthetic=SyntheticConfig(num_users=60, num_items=30)))
    p = build_prompt(data.examples["test"][0], tok, PromptConfig(max_prompt_tokens=300))
    assert p.text.startswith("<|im_start|>system\n") and len(p.token_ids) <= 300
    assert p.text.endswith("<|im_start|>assistant\n")


def test_inputs_end_with_the_target_item_and_both_averages(tokenizer):
    """The facts every answer needs are the last lines, whatever the histories' lengths."""
    _, data = tokenizer
    for e in data.examples["test"][:10]:
        lines = format_inputs(e).split("\n")
        assert lines[-4] == f"Target item: {e.item_title}"
        assert lines[-3] == f"Item information: {e.item_info}"
        assert lines[-2].startswith(f"User average rating: {e.user_avg_rating:.2f} ")
        assert lines[-1].startswith(f"Target item average rating: {e.item_avg_rating:.2f} ")
        assert lines[0] == "User history (oldest first):"
        # every history line comes before the target item
        assert lines.index("Earlier reviews of the target item by other users (oldest first):") < (
            len(lines) - 4
        )
