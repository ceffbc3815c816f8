"""The run configuration's schema: one frozen dataclass per section.

Configs under ``configs/`` are Python files whose ``get_config(arg=None)`` returns an
``ml_collections.ConfigDict``; :func:`load_settings` validates it once at start-up
(unknown keys, wrong types, impossible values and combinations, each error naming the
key) and returns a :class:`Settings`. Nothing below the entry point reads the ConfigDict.
"""

from __future__ import annotations

import dataclasses

from reczero_jax.config_parsing import ConfigError, from_mapping
from reczero_jax.data.data_config import BaselinesConfig, DataConfig

MODES = ("generate", "baselines", "sft", "grpo", "recone", "eval")
DTYPES = ("float32", "bfloat16")
REMAT = ("none", "full", "dots")
DEFAULT_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config.{key}: {message}")


@dataclasses.dataclass(frozen=True)
class ScratchModel:
    """Shapes of a Qwen2-style model trained from scratch (``model.hf_dir`` empty in the
    training modes), e.g. the CPU demo's."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 32
    tokenizer_vocab_size: int = 512

    def __post_init__(self):
        for name in (
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "tokenizer_vocab_size",
        ):
            _require(getattr(self, name) > 0, f"model.scratch.{name}", "must be positive")
        _require(
            self.num_heads % self.num_kv_heads == 0,
            "model.scratch.num_kv_heads",
            "must divide model.scratch.num_heads",
        )


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """Which weights to run and in which precision.

    Attributes:
      hf_dir: a Hugging Face checkpoint folder (config.json + safetensors). Empty: a tiny
        random Qwen2-style model and tokenizer are built offline under the workdir.
      tokenizer_dir: tokenizer folder; empty means ``hf_dir``.
      dtype: compute dtype ('float32' or 'bfloat16'); logits are always float32.
      param_dtype: storage dtype of the parameters.
      remat: activation rematerialisation in training ('none', 'full', 'dots').
    """

    hf_dir: str = ""
    tokenizer_dir: str = ""
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: str = "none"
    scratch: ScratchModel = ScratchModel()

    def __post_init__(self):
        _require(
            self.dtype in DTYPES, "model.dtype", f"must be one of {DTYPES}, got {self.dtype!r}"
        )
        _require(
            self.param_dtype in DTYPES,
            "model.param_dtype",
            f"must be one of {DTYPES}, got {self.param_dtype!r}",
        )
        _require(self.remat in REMAT, "model.remat", f"must be one of {REMAT}, got {self.remat!r}")


@dataclasses.dataclass(frozen=True)
class MeshSettings:
    """Device mesh ('data', 'fsdp', 'tensor'); one size may be -1 (all remaining devices)."""

    shape: tuple[int, int, int] = (1, -1, 1)

    def __post_init__(self):
        _require(
            self.shape.count(-1) <= 1 and all(s == -1 or s >= 1 for s in self.shape),
            "mesh.shape",
            f"sizes must be >= 1 with at most one -1, got {self.shape}",
        )


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """Group sampling.

    Attributes:
      num_samples: G, answers per prompt.
      max_new_tokens: generation budget per answer.
      method: 'sample' or 'greedy'.
      temperature / top_k / top_p: see :class:`reczero_jax.sampling.methods.Sampling`.
      stop_strings: texts that end an answer once generated (matched on bytes).
      prompt_buckets: increasing prompt lengths prompts are left-padded to.
    """

    num_samples: int = 4
    max_new_tokens: int = 64
    method: str = "sample"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    stop_strings: tuple[str, ...] = ("</rate>",)
    prompt_buckets: tuple[int, ...] = DEFAULT_BUCKETS

    def __post_init__(self):
        _require(
            self.num_samples >= 1, "sampling.num_samples", f"must be >= 1, got {self.num_samples}"
        )
        _require(
            self.max_new_tokens >= 1,
            "sampling.max_new_tokens",
            f"must be >= 1, got {self.max_new_tokens}",
        )
        _require(
            self.method in ("sample", "greedy"),
            "sampling.method",
            f"must be 'sample' or 'greedy', got {self.method!r}",
        )
        _require(
            self.temperature > 0, "sampling.temperature", f"must be > 0, got {self.temperature}"
        )
        _require(self.top_k >= 0, "sampling.top_k", f"must be >= 0, got {self.top_k}")
        _require(0 < self.top_p <= 1, "sampling.top_p", f"must be in (0, 1], got {self.top_p}")
        _require(
            len(self.prompt_buckets) > 0
            and all(b > 0 for b in self.prompt_buckets)
            and list(self.prompt_buckets) == sorted(set(self.prompt_buckets)),
            "sampling.prompt_buckets",
            f"must be positive and strictly increasing, got {self.prompt_buckets}",
        )
        _require(all(self.stop_strings), "sampling.stop_strings", "stop strings must not be empty")


@dataclasses.dataclass(frozen=True)
class OptimSettings:
    """AdamW with global-norm clipping (see ``reczero_jax.rl.update.make_optimizer``)."""

    learning_rate: float = 2e-6
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    warmup_steps: int = 0
    decay_steps: int = 0
    b1: float = 0.9
    b2: float = 0.999

    def __post_init__(self):
        _require(self.learning_rate > 0, "optim.learning_rate", "must be > 0")
        _require(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        _require(self.warmup_steps >= 0 and self.decay_steps >= 0, "optim", "steps must be >= 0")


@dataclasses.dataclass(frozen=True)
class GRPOSettings:
    """RecZero's RL stage. G is ``sampling.num_samples``; the sampling temperature is
    ``sampling.temperature`` (the trainer's log-probs use the same one).

    Attributes:
      steps: rollouts (each: prompts_per_step prompts x G samples).
      prompts_per_step: B.
      epochs: mu, passes over each rollout.
      mini_batches: optimizer steps per epoch (the rollout's groups split evenly).
      micro_groups: groups per micro-batch of gradient accumulation (0: whole mini-batch).
      advantage_std: 'unbiased' (reference), 'population' or 'none' (Dr.GRPO).
      aggregation: 'token-mean', 'seq-mean-token-mean' or 'dr_grpo'.
      eps_low / eps_high / dual_clip_c: PPO clipping.
      kl_coef / kl_estimator: KL to the frozen starting policy (0 skips its forward).
      entropy_coef: entropy bonus.
      reward_preset: 'paper', 'reference_code' or 'exact'.
      eval_every / eval_examples: validation strict MAE every N steps on that many
        validation examples (0: never); the best checkpoint is kept by it.
    """

    steps: int = 300
    prompts_per_step: int = 8
    epochs: int = 1
    mini_batches: int = 1
    micro_groups: int = 0
    advantage_std: str = "unbiased"
    aggregation: str = "token-mean"
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip_c: float = 3.0
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    reward_preset: str = "paper"
    eval_every: int = 50
    eval_examples: int = 256
    optim: OptimSettings = OptimSettings()

    def __post_init__(self):
        _require(self.steps >= 0, "grpo.steps", "must be >= 0")
        _require(self.prompts_per_step >= 1, "grpo.prompts_per_step", "must be >= 1")
        _require(self.epochs >= 1, "grpo.epochs", "must be >= 1")
        _require(
            self.mini_batches >= 1 and self.prompts_per_step % self.mini_batches == 0,
            "grpo.mini_batches",
            f"must be >= 1 and divide grpo.prompts_per_step={self.prompts_per_step}",
        )
        per_mini = self.prompts_per_step // self.mini_batches
        _require(
            self.micro_groups >= 0
            and (self.micro_groups == 0 or per_mini % self.micro_groups == 0),
            "grpo.micro_groups",
            f"must divide the groups per mini-batch ({per_mini})",
        )
        _require(
            self.advantage_std in ("unbiased", "population", "none"),
            "grpo.advantage_std",
            "must be 'unbiased', 'population' or 'none'",
        )
        _require(
            self.aggregation in ("token-mean", "seq-mean-token-mean", "dr_grpo"),
            "grpo.aggregation",
            "must be 'token-mean', 'seq-mean-token-mean' or 'dr_grpo'",
        )
        _require(self.kl_estimator in ("k3", "k2"), "grpo.kl_estimator", "must be 'k3' or 'k2'")
        _require(self.kl_coef >= 0, "grpo.kl_coef", "must be >= 0")
        _require(
            self.reward_preset in ("paper", "reference_code", "exact"),
            "grpo.reward_preset",
            "must be 'paper', 'reference_code' or 'exact'",
        )
        _require(self.eps_low >= 0 and self.eps_high >= 0, "grpo.eps_low", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class SFTSettings:
    """RecOne's cold start: supervised fine-tuning on reasoning traces.

    Attributes:
      steps / batch_size / micro_groups: optimizer steps, examples per step, examples per
        micro-batch (0: whole batch).
      traces: 'teacher' (the synthetic world's teacher), 'file' (JSONL at traces_path) or
        'self' (sampled from the current model, wrong answers rewritten with the true
        rating as a hint).
      num_traces: traces to build (teacher / self).
      max_response_tokens: responses are cut (and trained) at this length.
    """

    steps: int = 500
    batch_size: int = 16
    micro_groups: int = 0
    traces: str = "teacher"
    traces_path: str = ""
    num_traces: int = 1000
    max_response_tokens: int = 128
    optim: OptimSettings = OptimSettings(learning_rate=1e-5)

    def __post_init__(self):
        _require(self.steps >= 0, "sft.steps", "must be >= 0")
        _require(self.batch_size >= 1, "sft.batch_size", "must be >= 1")
        _require(
            self.micro_groups == 0 or self.batch_size % self.micro_groups == 0,
            "sft.micro_groups",
            "must divide sft.batch_size",
        )
        _require(
            self.traces in ("teacher", "file", "self"),
            "sft.traces",
            "must be 'teacher', 'file' or 'self'",
        )
        _require(
            self.traces != "file" or bool(self.traces_path),
            "sft.traces_path",
            "sft.traces='file' needs a JSONL path",
        )


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """Greedy evaluation. ``num_examples`` 0 = the whole split."""

    split: str = "test"
    num_examples: int = 0
    batch_size: int = 64

    def __post_init__(self):
        _require(
            self.split in ("train", "validation", "test"),
            "eval.split",
            "must be 'train', 'validation' or 'test'",
        )
        _require(self.batch_size >= 1 and self.num_examples >= 0, "eval.batch_size", "must be >= 1")


@dataclasses.dataclass(frozen=True)
class CheckpointSettings:
    """Orbax checkpoints under ``workdir/checkpoints``; resume precedence: a checkpoint in
    the workdir > ``resume_from`` > ``model.hf_dir`` > scratch."""

    save_every: int = 100
    max_to_keep: int = 2
    resume_from: str = ""
    export_hf: bool = True

    def __post_init__(self):
        _require(self.save_every >= 1, "checkpoint.save_every", "must be >= 1")
        _require(self.max_to_keep >= 1, "checkpoint.max_to_keep", "must be >= 1")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The whole run.

    Attributes:
      mode: what ``reczero_jax.main`` does ('generate', 'baselines').
      seed: root of all randomness.
      workdir: output folder (results.json, checkpoints, logs).
      prompt / system_prompt / chat: the text for mode 'generate'; ``chat`` applies the
        tokenizer's chat template.
    """

    mode: str = "generate"
    seed: int = 0
    workdir: str = ""
    model: ModelSettings = ModelSettings()
    mesh: MeshSettings = MeshSettings()
    sampling: SamplingSettings = SamplingSettings()
    prompt: str = ""
    system_prompt: str = ""
    chat: bool = True
    data: DataConfig = DataConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    sft: SFTSettings = SFTSettings()
    grpo: GRPOSettings = GRPOSettings()
    eval: EvalSettings = EvalSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()

    def __post_init__(self):
        _require(self.mode in MODES, "mode", f"must be one of {MODES}, got {self.mode!r}")
        _require(
            self.mode != "baselines" or bool(self.workdir),
            "workdir",
            "mode 'baselines' writes results.json there; set --config.workdir=DIR",
        )
        _require(
            self.data.prompt.max_prompt_tokens <= self.sampling.prompt_buckets[-1],
            "data.prompt.max_prompt_tokens",
            f"{self.data.prompt.max_prompt_tokens} exceeds the largest of "
            f"sampling.prompt_buckets ({self.sampling.prompt_buckets[-1]})",
        )
        _require(
            self.mode in ("generate", "baselines") or bool(self.workdir),
            "workdir",
            f"mode {self.mode!r} writes checkpoints and results there; set --config.workdir=DIR",
        )


def load_settings(config) -> Settings:
    """Validates a ConfigDict (or any nested mapping) into :class:`Settings`."""
    return from_mapping(Settings, config, "config")


def default_config():
    """A ConfigDict holding every key of :class:`Settings` at its default value.

    Config files start from it, so every key can be overridden from the command line
    (``--config.sampling.top_p=0.9``) and a typo in a config file is caught by
    :func:`load_settings`.
    """
    import ml_collections

    return ml_collections.ConfigDict(dataclasses.asdict(Settings()))


def load_config_file(spec: str):
    """The ConfigDict of ``path[:arg]``, loaded the way ``--config`` loads it (configs that
    extend another config use it)."""
    import importlib.util
    import pathlib

    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)
