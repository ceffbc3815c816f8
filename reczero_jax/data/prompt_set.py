"""The tokenized prompts of one split, the batch order of training, the tokenizer corpus.

``batch_indices`` is a pure function of (seed, step): a resumed run, or each host of a pod
taking its slice, sees the same order without any state.
"""

from __future__ import annotations

import numpy as np

from reczero_jax.data.data_config import PromptConfig
from reczero_jax.data.examples import Example
from reczero_jax.data.prompts import INSTRUCTIONS, build_prompt, format_inputs


class PromptSet:
    """The prompts of one split, tokenized lazily (a GRPO run touches a fraction).

    Attributes:
      examples: the split's examples.
      targets: float32 [N], the true ratings.
      fallbacks: float32 [N], the strict metric's stand-in for an unreadable answer (the
        user's average rating shown in the prompt).
    """

    def __init__(self, examples: list[Example], tokenizer, prompt_cfg: PromptConfig):
        self.examples = examples
        self.targets = np.asarray([e.rating for e in examples], np.float32)
        self.fallbacks = np.asarray([e.user_avg_rating for e in examples], np.float32)
        self.tokenizer, self.prompt_cfg = tokenizer, prompt_cfg
        self._ids: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.examples)

    def ids(self, i: int) -> list[int]:
        """The token ids of prompt ``i``."""
        if i not in self._ids:
            self._ids[i] = list(
                build_prompt(self.examples[i], self.tokenizer, self.prompt_cfg).token_ids
            )
        return self._ids[i]

    def rows(self, indices) -> PromptRows:
        """The token ids of prompts ``indices``, as a lazy sequence: ``rows[k]`` tokenizes
        prompt ``indices[k]`` when it is first read (a sampler reads only its rows)."""
        return PromptRows(self, [int(i) for i in indices])

    def text(self, i: int) -> str:
        return build_prompt(self.examples[i], self.tokenizer, self.prompt_cfg).text

    def sample(self, n: int, seed: int) -> PromptSet:
        """A fixed random sample of ``n`` prompts (all of them when n <= 0 or n >= len),
        in a seeded random order, sharing this set's tokenized prompts."""
        if n <= 0 or n >= len(self):
            return self
        pick = np.sort(np.random.default_rng([seed, 13]).choice(len(self), n, replace=False))
        out = PromptSet([self.examples[i] for i in pick], self.tokenizer, self.prompt_cfg)
        out._ids = {j: self._ids[i] for j, i in enumerate(pick) if i in self._ids}
        return out


class PromptRows:
    """A lazy sequence of the token ids of some prompts of a PromptSet."""

    def __init__(self, prompts: PromptSet, indices: list[int]):
        self._prompts, self._indices = prompts, indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, k: int) -> list[int]:
        return self._prompts.ids(self._indices[k])


def batch_indices(num_examples: int, batch: int, step: int, seed: int) -> np.ndarray:
    """int64 [batch], the example indices of training step ``step``: epoch-wise
    permutations derived from (seed, epoch), consumed ``batch`` at a time."""
    out = []
    pos = step * batch
    while len(out) < batch:
        epoch, offset = divmod(pos, num_examples)
        order = np.random.default_rng([seed, epoch]).permutation(num_examples)
        take = min(batch - len(out), num_examples - offset)
        out.extend(order[offset : offset + take].tolist())
        pos += take
    return np.asarray(out, np.int64)


def tokenizer_corpus(
    examples: list[Example], variant: str, seed: int, extra=None, size: int = 2000
) -> list[str]:
    """Texts to train a tokenizer for a model trained from scratch: the instruction and
    the inputs of ``size`` random training examples; ``extra(i, rng)``, when given, adds a
    text for each of the first 1,000 (e.g. the synthetic teacher's answer)."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(examples), size=min(len(examples), size), replace=False)
    corpus = [INSTRUCTIONS[variant]] + [format_inputs(examples[i]) for i in pick]
    if extra is not None:
        corpus += [extra(examples[i], rng) for i in pick[:1000]]
    return corpus
