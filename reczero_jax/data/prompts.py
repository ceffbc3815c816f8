"""Think-before-Recommendation prompts from Examples.

The instruction (our wording) asks for four tagged steps, each tag exactly once and in
this order: <analyze user>, <analyze item>, <match>, <rate>. Ablations: 'rating_only'
(<rate> alone) and 'single_think' (one <think> block, then <rate>).

Modes: 'chat' puts the instruction in the system message and the inputs in the user
message, through ``tokenizer.apply_chat_template`` with the generation prompt; 'raw'
fills ``PromptConfig.raw_template`` and tokenizes it without special tokens.

Budget: with ``max_prompt_tokens`` > 0 an over-long prompt drops history entries,
oldest first across the user and the item history (equal times: the item review goes
first); the instruction and the target item are never dropped.
"""

from __future__ import annotations

import dataclasses

from reczero_jax.data.data_config import PromptConfig
from reczero_jax.data.examples import Example

FOUR_STEP_TAGS = (
    "<analyze user>",
    "</analyze user>",
    "<analyze item>",
    "</analyze item>",
    "<match>",
    "</match>",
    "<rate>",
    "</rate>",
)

_TASK = (
    "You predict how a user will rate an item on a scale from 1 to 5. You are given the "
    "user's earlier ratings and reviews, the user's average rating, the target item with "
    "earlier reviews of it by other users, and the item's average rating.\n"
)
INSTRUCTIONS = {
    "four_step": _TASK
    + "Think before you rate. Answer in exactly four tagged parts, in this order, using each "
    "tag exactly once:\n"
    "<analyze user> the user's preferences, summed up from the history </analyze user>\n"
    "<analyze item> the item's main aspects, marking with [pos] what this user may like and "
    "with [neg] what the user may dislike </analyze item>\n"
    "<match> whether and why the item suits this user, linking the two analyses </match>\n"
    "<rate> only the predicted rating, a number from 1 to 5 </rate>",
    "rating_only": _TASK
    + "Answer with the predicted rating only, a number from 1 to 5, inside one tag:\n"
    "<rate> rating </rate>",
    "single_think": _TASK
    + "Think before you rate. First reason about the user, the item and how well they match "
    "inside one tag, then give the rating:\n"
    "<think> your reasoning </think>\n"
    "<rate> only the predicted rating, a number from 1 to 5 </rate>",
}


class PromptTooLongError(ValueError):
    """Even with every history entry dropped the prompt exceeds max_prompt_tokens."""


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A built prompt: its text, token ids and how many history entries were dropped."""

    text: str
    token_ids: tuple[int, ...]
    num_history_dropped: int


def _stars(x: float) -> str:
    return f"{x:g}"


def format_inputs(example: Example, num_dropped: int = 0) -> str:
    """The four inputs as text, with the ``num_dropped`` oldest history entries left out.

    Layout: the user's history, the earlier reviews of the target item, then the target
    item, its information and the two averages as the last lines. The facts every answer
    needs thus sit at an almost fixed distance from the end of the prompt, whatever the
    histories' lengths (a small model trained from scratch copies by position far more
    readily than by content; README: the CPU demo).
    """
    entries = [(e.timestamp, 0, n) for n, e in enumerate(example.item_history)]
    entries += [(e.timestamp, 1, n) for n, e in enumerate(example.user_history)]
    dropped = set((kind, n) for _, kind, n in sorted(entries)[:num_dropped])
    lines = ["User history (oldest first):"]
    shown = [e for n, e in enumerate(example.user_history) if (1, n) not in dropped]
    for k, e in enumerate(shown, 1):
        review = f" | {e.review}" if e.review else ""
        lines.append(f"{k}. {e.title} | rating {_stars(e.rating)}{review}")
    if not shown:
        lines.append("(none shown)")
    lines.append("Earlier reviews of the target item by other users (oldest first):")
    shown_i = [e for n, e in enumerate(example.item_history) if (0, n) not in dropped]
    for k, e in enumerate(shown_i, 1):
        review = f" | {e.review}" if e.review else ""
        lines.append(f"{k}. rating {_stars(e.rating)}{review}")
    if not shown_i:
        lines.append("(none shown)")
    lines.append(f"Target item: {example.item_title}")
    if example.item_info:
        lines.append(f"Item information: {example.item_info}")
    lines.append(
        f"User average rating: {example.user_avg_rating:.2f} "
        f"(over {example.user_num_ratings} ratings)"
    )
    lines.append(
        f"Target item average rating: {example.item_avg_rating:.2f} "
        f"(over {example.item_num_ratings} ratings)"
    )
    return "\n".join(lines)


def render(instruction: str, inputs: str, cfg: PromptConfig, tokenizer) -> str:
    """The full prompt text in ``cfg.mode``."""
    if cfg.mode == "raw":
        return cfg.raw_template.replace("{instruction}", instruction).replace("{inputs}", inputs)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"prompt.mode='chat' needs a tokenizer with a chat template; "
            f"{type(tokenizer).__name__} {getattr(tokenizer, 'name_or_path', '')!r} has none "
            "(use prompt.mode='raw')"
        )
    messages = [{"role": "system", "content": instruction}, {"role": "user", "content": inputs}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def build_prompt(example: Example, tokenizer, cfg: PromptConfig) -> Prompt:
    """Builds the prompt of ``example`` with a transformers tokenizer.

    Finds the fewest dropped history entries that fit ``cfg.max_prompt_tokens`` by
    bisection (the length never grows as entries are dropped): O(log H) tokenizations.
    Raises PromptTooLongError when nothing fits.
    """
    instruction = INSTRUCTIONS[cfg.variant]

    def make(num_dropped: int) -> Prompt:
        text = render(instruction, format_inputs(example, num_dropped), cfg, tokenizer)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return Prompt(text=text, token_ids=tuple(ids), num_history_dropped=num_dropped)

    full = make(0)
    budget = cfg.max_prompt_tokens
    if budget == 0 or len(full.token_ids) <= budget:
        return full
    total = len(example.user_history) + len(example.item_history)
    bare = make(total)
    if len(bare.token_ids) > budget:
        raise PromptTooLongError(
            f"example (user {example.user_id}, item {example.item_id}): the prompt needs "
            f"{len(bare.token_ids)} tokens without any history, more than "
            f"prompt.max_prompt_tokens={budget}"
        )
    lo, hi, best = 1, total, bare  # invariant: make(hi) fits
    while lo < hi:
        mid = (lo + hi) // 2
        p = make(mid)
        if len(p.token_ids) <= budget:
            hi, best = mid, p
        else:
            lo = mid + 1
    return best if best.num_history_dropped == hi else make(hi)
