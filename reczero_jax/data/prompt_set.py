"""The tokenized prompts of one split, the batch order of training, the tokenizer corpus.

``batch_indices`` is a pure function of (seed, step): a resumed run, or each host of a pod
taking its slice, sees the same order without any state.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence

import numpy as np

from reczero_jax.data.data_config import PromptConfig
from reczero_jax.data.examples import Example
from reczero_jax.data.prompts import INSTRUCTIONS, Prompt, build_prompt, format_inputs


class PromptSet:
    """The prompts of one split, read and tokenized lazily (a GRPO run touches a fraction).

    Nothing is read when the set is made: ``examples`` may be a lazy sequence whose items
    are decoded from a prepared dataset on access (``data.tfds_data_dir``), and each example
    is read when its prompt, target or fallback is first needed. Its prompt's token ids and
    its two numbers are kept, and the last ``RECENT`` examples read, so a training step
    that needs a batch's targets and its prompts reads each example once.

    Attributes:
      examples: the split's examples (a sequence).
    """

    RECENT = 1024

    def __init__(self, examples: Sequence[Example], tokenizer, prompt_cfg: PromptConfig):
        self.examples = examples
        self.tokenizer, self.prompt_cfg = tokenizer, prompt_cfg
        self._ids: dict[int, list[int]] = {}
        self._numbers: dict[int, tuple[float, float]] = {}  # (rating, user_avg_rating)
        self._recent: collections.OrderedDict[int, Example] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self.examples)

    def example(self, i: int) -> Example:
        """Example ``i`` (read from ``examples`` unless among the last ``RECENT`` read; its
        target and fallback are kept)."""
        i = int(i)
        if i in self._recent:
            self._recent.move_to_end(i)
            return self._recent[i]
        e = self._recent[i] = self.examples[i]
        if len(self._recent) > self.RECENT:
            self._recent.popitem(last=False)
        self._numbers[i] = (e.rating, e.user_avg_rating)
        return e

    def _number(self, i: int, which: int) -> float:
        i = int(i)
        if i not in self._numbers:
            self.example(i)
        return self._numbers[i][which]

    def targets_of(self, indices: Iterable[int]) -> np.ndarray:
        """float32 [len(indices)], the true ratings of examples ``indices``."""
        return np.asarray([self._number(i, 0) for i in indices], np.float32)

    def fallbacks_of(self, indices: Iterable[int]) -> np.ndarray:
        """float32 [len(indices)], the strict metric's stand-in for an unreadable answer to
        examples ``indices`` (the user's average rating shown in the prompt)."""
        return np.asarray([self._number(i, 1) for i in indices], np.float32)

    def prompt(self, i: int) -> Prompt:
        """Prompt ``i`` built (text, token ids, history entries dropped); its ids are kept."""
        built = build_prompt(self.example(i), self.tokenizer, self.prompt_cfg)
        self._ids[int(i)] = list(built.token_ids)
        return built

    def ids(self, i: int) -> list[int]:
        """The token ids of prompt ``i``."""
        i = int(i)
        if i not in self._ids:
            self.prompt(i)
        return self._ids[i]

    def rows(self, indices) -> PromptRows:
        """The token ids of prompts ``indices``, as a lazy sequence: ``rows[k]`` tokenizes
        prompt ``indices[k]`` when it is first read (a sampler reads only its rows)."""
        return PromptRows(self, [int(i) for i in indices])

    def text(self, i: int) -> str:
        return self.prompt(i).text

    def sample(self, n: int, seed: int) -> PromptSet:
        """A fixed random sample of ``n`` prompts (all of them when n <= 0 or n >= len),
        in a seeded random order, sharing what this set has read so far (it reads
        nothing itself)."""
        if n <= 0 or n >= len(self):
            return self
        pick = np.sort(np.random.default_rng([seed, 13]).choice(len(self), n, replace=False))
        out = PromptSet(Subset(self.examples, pick), self.tokenizer, self.prompt_cfg)
        out._ids = {j: self._ids[i] for j, i in enumerate(pick) if i in self._ids}
        out._numbers = {j: self._numbers[i] for j, i in enumerate(pick) if i in self._numbers}
        return out


class Subset(Sequence):
    """Items ``indices`` of a sequence, read from it on access (nothing copied)."""

    def __init__(self, base: Sequence, indices):
        self._base, self._indices = base, [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self._base[i] for i in self._indices[k]]
        return self._base[self._indices[k]]


class PromptRows:
    """A lazy sequence of the token ids of some prompts of a PromptSet."""

    def __init__(self, prompts: PromptSet, indices: list[int]):
        self._prompts, self._indices = prompts, indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, k: int) -> list[int]:
        return self._prompts.ids(self._indices[k])


def batch_indices(
    num_examples: int, batch: int, step: int, seed: int, round: int = 0
) -> np.ndarray:
    """int64 [batch], the example indices of training step ``step``: epoch-wise
    permutations derived from (seed, epoch), consumed ``batch`` at a time.

    ``round`` r > 0 gives the step's r-th set of further prompts (GRPO's dynamic
    sampling): distinct examples drawn from (seed, step, r), independent of the epoch
    order, so that round 0 is the same whether or not further rounds are drawn.
    """
    if round > 0:
        rng = np.random.default_rng([seed, step, round])
        return rng.choice(num_examples, batch, replace=num_examples < batch).astype(np.int64)
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
