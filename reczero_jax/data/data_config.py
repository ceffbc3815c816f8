"""Typed, validated settings of the data pipeline and of the classical baselines.

The project's config converter maps a nested ``ml_collections.ConfigDict`` onto these
frozen dataclasses (unknown keys are rejected there); ``__post_init__`` rejects
impossible values, naming the field. Code below this layer reads attributes only.
"""

from __future__ import annotations

import dataclasses

from reczero_jax.rewards.grammar import FORMATS

SOURCES = (
    "synthetic",
    "amazon2014",
    "amazon2018",
    "amazon2023",
    "yelp",
    "movielens100k",
    "movielens1m",
)
SPLITS = ("leave_last_out", "global_time")
PROMPT_MODES = ("chat", "raw")
PROMPT_VARIANTS = tuple(FORMATS)  # the answer formats the reward grammar knows


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ValueError(f"{field}: {message}")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """The generated world (see ``reczero_jax/data/synthetic.py``).

    Attributes:
      num_users / num_items: population sizes.
      interactions_per_user: ratings each user gives (distinct items, distinct days).
      num_genres: genres in the world (at most 8 named ones); each item has 2.
      seed: PRNG seed of the world; the same seed gives the same world.
      noise: std of the Gaussian rating noise, in stars (before rounding and clipping).
      user_bias_std / quality_std: std of the user bias b_u and of the item quality q_i, stars.
      taste_weight: stars added (subtracted) per liked (disliked) genre of the item.
      price_weight: stars a thrifty user loses per price level above 'mid' (and gains below).
      teacher_noise: std, stars, of the noise the teacher adds to its rating in traces only.
    """

    num_users: int = 2000
    num_items: int = 200
    interactions_per_user: int = 20
    num_genres: int = 6
    seed: int = 0
    noise: float = 0.6
    user_bias_std: float = 0.4
    quality_std: float = 0.6
    taste_weight: float = 1.0
    price_weight: float = 0.5
    teacher_noise: float = 0.5

    def __post_init__(self):
        _check(self.num_users >= 1, "synthetic.num_users", f"must be >= 1, got {self.num_users}")
        _check(self.num_items >= 2, "synthetic.num_items", f"must be >= 2, got {self.num_items}")
        _check(
            1 <= self.interactions_per_user <= self.num_items,
            "synthetic.interactions_per_user",
            f"must be in [1, num_items={self.num_items}], got {self.interactions_per_user}",
        )
        _check(
            2 <= self.num_genres <= 8,
            "synthetic.num_genres",
            f"must be in [2, 8], got {self.num_genres}",
        )
        for name in ("noise", "user_bias_std", "quality_std", "teacher_noise"):
            value = getattr(self, name)
            _check(value >= 0, f"synthetic.{name}", f"must be >= 0, got {value}")
        _check(self.noise > 0, "synthetic.noise", "must be > 0 (the Bayes floor needs noise)")


@dataclasses.dataclass(frozen=True)
class PromptConfig:
    """How an Example becomes a prompt (see ``reczero_jax/data/prompts.py``).

    Attributes:
      mode: 'chat' (instruction = system message, inputs = user message, through the
        tokenizer's chat template) or 'raw' (``raw_template`` filled in, no chat template).
      variant: 'four_step' (the paper's prompt), 'rating_only' (answer ``<rate>`` alone)
        or 'single_think' (one ``<think>`` block, then ``<rate>``).
      max_prompt_tokens: token budget of the whole prompt; 0 = unlimited. Over-long
        prompts drop the oldest history entries first.
      raw_template: format string with ``{inputs}`` and usually ``{instruction}`` for raw
        mode.
    """

    mode: str = "chat"
    variant: str = "four_step"
    max_prompt_tokens: int = 0
    raw_template: str = "{instruction}\n\n{inputs}\n"

    def __post_init__(self):
        _check(self.mode in PROMPT_MODES, "prompt.mode", f"{self.mode!r} not in {PROMPT_MODES}")
        _check(
            self.variant in PROMPT_VARIANTS,
            "prompt.variant",
            f"{self.variant!r} not in {PROMPT_VARIANTS}",
        )
        _check(
            self.max_prompt_tokens >= 0,
            "prompt.max_prompt_tokens",
            f"must be >= 0, got {self.max_prompt_tokens}",
        )
        _check(
            "{inputs}" in self.raw_template,
            "prompt.raw_template",
            "must contain {inputs} ({instruction} may be left out, e.g. for a model trained "
            "from scratch that learns the answer format from its cold start)",
        )


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the ratings come from and how examples are cut from them.

    Attributes:
      source: one of SOURCES.
      path: the reviews / ratings file (MovieLens: the folder or its u.data / ratings.dat).
        Unused for 'synthetic'.
      meta_path: optional item file (Amazon meta, Yelp business); '' = none (Yelp and
        MovieLens then look beside ``path`` for their standard file name).
      split: 'leave_last_out' (per user, chronological) or 'global_time'.
      valid_fraction / test_fraction: shares of the time range for 'global_time'.
      history_len / item_history_len: most recent entries shown (user / item history);
        item_history_len 0 shows no reviews of the target item (its average still counts).
      review_chars: reviews are cut to this many characters.
      min_history_total: drop examples whose two histories hold fewer entries together
        (5 = the reference code's filter; 0 = only the paper's non-empty filter).
      tfds_data_dir: the folder (local or ``gs://``) of the TFDS dataset of these examples:
        ``mode=prepare`` writes it there once; when set, the training and evaluation modes
        read the examples from it, lazily ('' = build them from the raw data).
    """

    source: str = "synthetic"
    path: str = ""
    meta_path: str = ""
    split: str = "leave_last_out"
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    history_len: int = 10
    item_history_len: int = 10
    review_chars: int = 400
    min_history_total: int = 0
    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)
    prompt: PromptConfig = dataclasses.field(default_factory=PromptConfig)
    tfds_data_dir: str = ""

    def __post_init__(self):
        _check(self.source in SOURCES, "data.source", f"{self.source!r} not in {SOURCES}")
        _check(
            self.source == "synthetic" or bool(self.path),
            "data.path",
            f"is required for source {self.source!r}",
        )
        _check(self.split in SPLITS, "data.split", f"{self.split!r} not in {SPLITS}")
        for name in ("valid_fraction", "test_fraction"):
            value = getattr(self, name)
            _check(0 < value < 1, f"data.{name}", f"must be in (0, 1), got {value}")
        _check(
            self.valid_fraction + self.test_fraction < 1,
            "data.valid_fraction",
            "valid_fraction + test_fraction must be < 1",
        )
        for name in ("history_len", "review_chars"):
            value = getattr(self, name)
            _check(value >= 1, f"data.{name}", f"must be >= 1, got {value}")
        _check(
            self.item_history_len >= 0,
            "data.item_history_len",
            f"must be >= 0 (0: no reviews of the target item shown), got {self.item_history_len}",
        )
        _check(
            self.min_history_total >= 0,
            "data.min_history_total",
            f"must be >= 0, got {self.min_history_total}",
        )


@dataclasses.dataclass(frozen=True)
class BaselinesConfig:
    """The classical rating predictors (see ``reczero_jax/baselines``).

    Attributes:
      bias_l2: L2 weight on b_u, b_i of the bias-only model (closed-form ALS sweeps).
      bias_sweeps: alternating least-squares sweeps of the bias-only model.
      mf_dim: latent dimension of biased matrix factorisation.
      mf_l2: L2 weight on the factors and biases (per observed rating, mean loss).
      mf_lr: Adam learning rate.
      mf_epochs: maximum passes over the training ratings.
      mf_batch_size: ratings per optimiser step.
      mf_init_std: std of the initial factors.
      patience: epochs without validation-RMSE improvement before stopping.
    """

    bias_l2: float = 5.0
    bias_sweeps: int = 10
    mf_dim: int = 16
    mf_l2: float = 0.1
    mf_lr: float = 0.01
    mf_epochs: int = 60
    mf_batch_size: int = 1024
    mf_init_std: float = 0.1
    patience: int = 5

    def __post_init__(self):
        for name in ("bias_l2", "mf_l2"):
            value = getattr(self, name)
            _check(value >= 0, f"baselines.{name}", f"must be >= 0, got {value}")
        for name in ("bias_sweeps", "mf_dim", "mf_epochs", "mf_batch_size", "patience"):
            value = getattr(self, name)
            _check(value >= 1, f"baselines.{name}", f"must be >= 1, got {value}")
        _check(self.mf_lr > 0, "baselines.mf_lr", f"must be > 0, got {self.mf_lr}")
        _check(
            self.mf_init_std > 0, "baselines.mf_init_std", f"must be > 0, got {self.mf_init_std}"
        )
