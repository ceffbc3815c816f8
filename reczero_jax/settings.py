"""The run configuration's schema: one frozen dataclass per section.

Configs under ``configs/`` are Python files whose ``get_config(arg=None)`` returns an
``ml_collections.ConfigDict``; :func:`load_settings` validates it once at start-up
(unknown keys, wrong types, impossible values and combinations, each error naming the
key) and returns a :class:`Settings`. Nothing below the entry point reads the ConfigDict.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from reczero_jax.config_parsing import ConfigError, from_mapping
from reczero_jax.data.data_config import BaselinesConfig, DataConfig
from reczero_jax.model.attention import KERNELS as ATTENTION_KERNELS
from reczero_jax.model.decoder import REMAT_POLICIES
from reczero_jax.model.params import DTYPES as DTYPE_TABLE
from reczero_jax.paths import as_path
from reczero_jax.rewards.grammar import PRESETS
from reczero_jax.rl.advantages import STD_MODES
from reczero_jax.rl.losses import AGGREGATIONS, KL_ESTIMATORS
from reczero_jax.sampling.methods import METHODS
from reczero_jax.sampling.sampler import DECODE_LOOPS

# A mode is the list of phases it runs, in order (reczero_jax/rl/run.py runs them);
# 'generate', 'baselines', 'prepare', 'predict' and 'report' have their own run functions
# and no training phase.
MODE_PHASES: dict[str, tuple[str, ...]] = {
    "generate": (),
    "baselines": (),
    "prepare": (),
    "predict": (),
    "report": (),
    "sft": ("sft", "eval"),
    "grpo": ("grpo", "eval"),
    "recone": ("sft", "eval", "grpo", "eval"),
    "eval": ("eval",),
}
MODES = tuple(MODE_PHASES)
DTYPES = tuple(DTYPE_TABLE)
REMAT = tuple(REMAT_POLICIES)
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
      hf_dir: a Hugging Face checkpoint folder (config.json + safetensors; local or
        ``gs://``, a remote one is copied to a local temporary folder). Empty: a tiny
        random Qwen2-style model and tokenizer are built offline under the workdir.
      tokenizer_dir: tokenizer folder (local or ``gs://``); empty means ``hf_dir``.
      dtype: compute dtype ('float32' or 'bfloat16'); logits are always float32.
      param_dtype: storage dtype of the parameters.
      remat: activation rematerialisation in training ('none', 'full', 'dots').
      logits_remat: the training forward's chunked log-probs recompute each chunk's
        logits in the backward pass (True: O(rows x chunk x vocab) memory) or keep them
        (False: one fewer [tokens, D] x [D, V] product, O(rows x T x vocab) memory; for
        small vocabularies and batches).
      scan_layers: the training forward loops over the layers (True: compile time flat
        in depth) or unrolls them (False: faster for shallow models, no stacked
        activations; compile time grows with depth). Sampling always loops.
      attention: the training forward's attention kernel: 'einsum' (batched products,
        any backend) or 'cudnn' (cuDNN's fused attention, no score matrices in memory;
        NVIDIA GPUs with dtype 'bfloat16'). Sampling always uses the einsum kernels.
    """

    hf_dir: str = ""
    tokenizer_dir: str = ""
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: str = "none"
    scan_layers: bool = True
    logits_remat: bool = True
    attention: str = "einsum"
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
        _require(
            self.attention in ATTENTION_KERNELS,
            "model.attention",
            f"must be one of {ATTENTION_KERNELS}, got {self.attention!r}",
        )
        _require(
            self.attention != "cudnn" or self.dtype == "bfloat16",
            "model.attention",
            f"'cudnn' needs model.dtype='bfloat16' (cuDNN's fused attention has no float32 "
            f"kernel), got model.dtype={self.dtype!r}",
        )


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
      max_new_tokens: generation budget per answer.
      method: 'sample' or 'greedy'.
      temperature / top_k / top_p: see :class:`reczero_jax.sampling.methods.Sampling`.
      stop_strings: texts that end an answer once generated (matched on bytes).
      prompt_buckets: increasing prompt lengths prompts are left-padded to.
      decode_loop: how a decode step runs the layers. 'unrolled': over per-layer weights
        and caches (made once per call); 'scanned': a loop over the stacked ones, which
        XLA:CPU runs by copying each layer's weights and cache slab at every step;
        'auto' (default): unrolled on CPU, scanned on GPU and TPU. Unrolled samples
        15-30% faster on CPU, compiles in time linear in depth and holds one more copy
        of the layers' o/down weights while sampling (README: the group sampler).
      cache_phases: the answer's decode steps run in this many loops, each over a
        generated-token cache just long enough for its steps (the cache grows between
        loops), so early steps read fewer cache slots: the same tokens, fewer bytes a step,
        one more compiled decode step per phase. 1 is a single loop.
    """

    max_new_tokens: int = 64
    method: str = "sample"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    stop_strings: tuple[str, ...] = ("</rate>",)
    prompt_buckets: tuple[int, ...] = DEFAULT_BUCKETS
    decode_loop: str = "auto"
    cache_phases: int = 4

    RENAMED: ClassVar[dict[str, str]] = {
        "unroll_layers": "write sampling.decode_loop='unrolled' (was True) or 'scanned' "
        "(was False); the default 'auto' unrolls on CPU only",
    }

    def __post_init__(self):
        _require(
            self.max_new_tokens >= 1,
            "sampling.max_new_tokens",
            f"must be >= 1, got {self.max_new_tokens}",
        )
        _require(
            self.method in METHODS,
            "sampling.method",
            f"must be one of {METHODS}, got {self.method!r}",
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
        _require(
            self.decode_loop in DECODE_LOOPS,
            "sampling.decode_loop",
            f"must be one of {tuple(DECODE_LOOPS)}, got {self.decode_loop!r}",
        )
        _require(
            self.cache_phases >= 1,
            "sampling.cache_phases",
            f"must be >= 1, got {self.cache_phases}",
        )


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
    """RecZero's RL stage. The sampling temperature is ``sampling.temperature`` (the
    trainer's log-probs use the same one).

    Attributes:
      num_generations: G, answers sampled per prompt (>= 2: advantages compare them).
      steps: rollouts (each: prompts_per_step prompts x G answers).
      prompts_per_step: B.
      epochs: mu, passes over each rollout.
      mini_batches: optimizer steps per epoch (the rollout's groups split evenly).
      micro_groups: groups per micro-batch of gradient accumulation (0: whole mini-batch).
      advantage_std: 'unbiased' (reference), 'population' or 'none' (Dr.GRPO).
      aggregation: 'token-mean', 'seq-mean-token-mean' or 'dr_grpo'.
      eps_low / eps_high / dual_clip_c: PPO clipping.
      kl_coef / kl_estimator: KL to the frozen starting policy (0 skips its forward).
      entropy_coef: entropy bonus.
      dynamic_sampling: keep only the groups whose rewards differ and refill the step
        from further prompts (DAPO; :mod:`reczero_jax.rl.group_filter`).
      dynamic_max_rounds: at most this many rollouts of prompts_per_step prompts per step
        with dynamic sampling (the cap on extra sampling).
      overlong_penalty / overlong_buffer: soft overlong punishment: up to
        ``overlong_penalty`` off the reward as an answer's length enters the last
        ``overlong_buffer`` tokens of ``sampling.max_new_tokens``, all of it when cut
        (0: off).
      overlong_filter: answers cut at ``sampling.max_new_tokens`` are left out of the loss.
      reward_preset: 'paper', 'reference_code' or 'exact'.
      eval_every / eval_examples: validation strict MAE every N steps on that many
        validation examples (0: never); the best checkpoint is kept by it.
    """

    num_generations: int = 8
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
    dynamic_sampling: bool = False
    dynamic_max_rounds: int = 3
    overlong_penalty: float = 0.0
    overlong_buffer: int = 0
    overlong_filter: bool = False
    reward_preset: str = "paper"
    eval_every: int = 50
    eval_examples: int = 256
    optim: OptimSettings = OptimSettings()

    def __post_init__(self):
        _require(
            self.num_generations >= 2,
            "grpo.num_generations",
            f"must be >= 2 (GRPO compares the answers of a group), got {self.num_generations}",
        )
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
        for key, value, allowed in (
            ("advantage_std", self.advantage_std, STD_MODES),
            ("aggregation", self.aggregation, AGGREGATIONS),
            ("kl_estimator", self.kl_estimator, KL_ESTIMATORS),
            ("reward_preset", self.reward_preset, PRESETS),
        ):
            _require(value in allowed, f"grpo.{key}", f"must be one of {allowed}, got {value!r}")
        _require(self.kl_coef >= 0, "grpo.kl_coef", f"must be >= 0, got {self.kl_coef}")
        _require(
            self.entropy_coef >= 0,
            "grpo.entropy_coef",
            f"must be >= 0 (a bonus on entropy), got {self.entropy_coef}",
        )
        _require(self.eps_low >= 0, "grpo.eps_low", f"must be >= 0, got {self.eps_low}")
        _require(self.eps_high >= 0, "grpo.eps_high", f"must be >= 0, got {self.eps_high}")
        _require(self.eval_every >= 0, "grpo.eval_every", "must be >= 0 (0: never)")
        _require(self.eval_examples >= 1, "grpo.eval_examples", "must be >= 1")
        _require(
            self.dynamic_max_rounds >= 1,
            "grpo.dynamic_max_rounds",
            f"must be >= 1 (rollouts per step), got {self.dynamic_max_rounds}",
        )
        _require(
            self.overlong_penalty >= 0,
            "grpo.overlong_penalty",
            f"must be >= 0 (the most taken off the reward), got {self.overlong_penalty}",
        )
        _require(self.overlong_buffer >= 0, "grpo.overlong_buffer", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class SFTSettings:
    """RecOne's cold start: supervised fine-tuning on reasoning traces.

    Attributes:
      steps / batch_size / micro_groups: optimizer steps, examples per step, examples per
        micro-batch (0: whole batch).
      traces: 'teacher' (the synthetic world's teacher; on real data the review teacher of
        ``data/review_teacher.py``), 'file' (JSONL at traces_path, a
        local path or a URI such as gs://bucket/traces.jsonl) or
        'self' (sampled from the current model, wrong answers rewritten with the true
        rating as a hint).
      num_traces: traces to build (teacher / self).
      rewrite_wrong: teacher traces only: RecOne's rewrite, a trace whose rating is wrong is
        written again with the true rating shown to the teacher (its analysis stays, its
        rating becomes the true one).
      max_response_tokens: responses are cut (and trained) at this length.
    """

    steps: int = 500
    batch_size: int = 16
    micro_groups: int = 0
    traces: str = "teacher"
    traces_path: str = ""
    num_traces: int = 1000
    rewrite_wrong: bool = False
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
        _require(self.num_traces >= 1, "sft.num_traces", "must be >= 1")
        _require(self.max_response_tokens >= 1, "sft.max_response_tokens", "must be >= 1")
        _require(
            self.traces in ("teacher", "file", "self"),
            "sft.traces",
            "must be 'teacher', 'file' or 'self'",
        )
        _require(
            not self.rewrite_wrong or self.traces == "teacher",
            "sft.rewrite_wrong",
            "applies to sft.traces='teacher' only ('self' always rewrites; a file's traces "
            "are used as written)",
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
    """Orbax checkpoints under ``workdir/checkpoints/<phase>``: the latest ``max_to_keep``
    and, for GRPO, the best by validation MAE. Where a phase's weights come from:
    its own checkpoint in the workdir > an earlier phase of the run > ``resume_from`` >
    ``model.hf_dir`` > scratch (``reczero_jax.rl.run.plan_phase``).

    Attributes:
      save_every: periodic checkpoint every N steps (and always at a phase's last step).
      max_to_keep: periodic checkpoints kept (the best one is kept besides).
      async_save: write checkpoints in the background (the last step's always waits).
      resume_from: an Orbax checkpoint directory (or one of its step folders) whose
        weights start the run.
      export_hf: write the final weights as a Hugging Face folder (workdir/hf_export).
    """

    save_every: int = 100
    max_to_keep: int = 2
    async_save: bool = True
    resume_from: str = ""
    export_hf: bool = True

    def __post_init__(self):
        _require(self.save_every >= 1, "checkpoint.save_every", "must be >= 1")
        _require(self.max_to_keep >= 1, "checkpoint.max_to_keep", "must be >= 1")


@dataclasses.dataclass(frozen=True)
class DistributedSettings:
    """One process per host: ``jax.distributed.initialize`` before any device is used.

    Attributes:
      enabled: initialize the multi-controller runtime (TPU pod slices: every worker
        runs the same command; the coordinator is found from the TPU environment).
      coordinator_address / num_processes / process_id: given explicitly where JAX
        cannot detect them (CPU or GPU clusters); empty / 0 / -1 = detect.
    """

    enabled: bool = False
    coordinator_address: str = ""
    num_processes: int = 0
    process_id: int = -1

    def __post_init__(self):
        _require(self.num_processes >= 0, "distributed.num_processes", "must be >= 0")
        _require(self.process_id >= -1, "distributed.process_id", "must be >= -1 (-1: detect)")


@dataclasses.dataclass(frozen=True)
class GenerateSettings:
    """Mode 'generate': sample answers to one prompt.

    Attributes:
      prompt: the text (must not be empty in mode 'generate').
      system_prompt: optional system message (chat only).
      chat: apply the tokenizer's chat template.
      num_samples: answers to draw.
    """

    prompt: str = "Hello"
    system_prompt: str = ""
    chat: bool = True
    num_samples: int = 4

    def __post_init__(self):
        _require(self.num_samples >= 1, "generate.num_samples", "must be >= 1")


@dataclasses.dataclass(frozen=True)
class PredictSettings:
    """Mode 'predict': the trained model's reasoning and rating for given users and items.

    Attributes:
      run_dir: a training run's workdir (its config.json, tokenizer and last checkpoint);
        empty: the weights of ``model.hf_dir`` with this config.
      user / item: one rating of the run's data to answer (ids as in the data).
      input: a JSONL file of ``{"history": [...], "item": {...}}`` records (README:
        predictions) to answer instead; the answers go to ``output``.
      output: where the batch form writes its JSONL (default: workdir/predict.jsonl).
      greedy: arg-max decoding (False: sample at ``sampling.temperature``).
    """

    run_dir: str = ""
    user: str = ""
    item: str = ""
    input: str = ""
    output: str = ""
    greedy: bool = True

    def __post_init__(self):
        _require(
            bool(self.user) == bool(self.item), "predict.user",
            "set both predict.user and predict.item (one rating of the run's data)",
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    """Mode 'report': ``report.md`` and PNG plots of a run.

    Attributes:
      run_dir: the run's workdir (default: ``workdir``); the report is written there.
      compare: more run directories, comma-separated, whose curves are overlaid.
      at_end: a training run writes its own report when it ends.
    """

    run_dir: str = ""
    compare: str = ""
    at_end: bool = False


@dataclasses.dataclass(frozen=True)
class Settings:
    """The whole run.

    Attributes:
      mode: what ``reczero_jax.main`` does; a training mode is the list of phases in
        ``MODE_PHASES``.
      seed: root of all randomness.
      workdir: output folder (results.json, checkpoints, logs): a local folder or a URI such
        as ``gs://bucket/run`` (:mod:`reczero_jax.paths`).
    """

    mode: str = "generate"
    seed: int = 0
    workdir: str = ""
    model: ModelSettings = ModelSettings()
    mesh: MeshSettings = MeshSettings()
    sampling: SamplingSettings = SamplingSettings()
    generate: GenerateSettings = GenerateSettings()
    predict: PredictSettings = PredictSettings()
    report: ReportSettings = ReportSettings()
    data: DataConfig = DataConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    sft: SFTSettings = SFTSettings()
    grpo: GRPOSettings = GRPOSettings()
    eval: EvalSettings = EvalSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    distributed: DistributedSettings = DistributedSettings()

    @property
    def phases(self) -> tuple[str, ...]:
        return MODE_PHASES[self.mode]

    def __post_init__(self):
        """Rules that combine sections (each section checks its own values)."""
        _require(self.mode in MODES, "mode", f"must be one of {MODES}, got {self.mode!r}")
        _require(
            self.mode in ("generate", "prepare") or bool(self.workdir),
            "workdir",
            f"mode {self.mode!r} writes results (and checkpoints) there; set --config.workdir=DIR",
        )
        _require(
            self.mode != "generate" or bool(self.generate.prompt),
            "generate.prompt",
            'mode "generate" needs a prompt (--config.generate.prompt="...")',
        )
        _require(
            self.data.prompt.max_prompt_tokens <= self.sampling.prompt_buckets[-1],
            "data.prompt.max_prompt_tokens",
            f"{self.data.prompt.max_prompt_tokens} exceeds the largest of "
            f"sampling.prompt_buckets ({self.sampling.prompt_buckets[-1]})",
        )
        if self.mode == "prepare":
            _require(
                bool(self.data.tfds_data_dir),
                "data.tfds_data_dir",
                "mode 'prepare' writes the TFDS dataset there; set "
                "--config.data.tfds_data_dir=DIR (local or gs://)",
            )
        if self.mode == "predict":
            _require(
                bool(self.predict.run_dir or self.model.hf_dir), "predict.run_dir",
                "mode 'predict' answers with trained weights: set predict.run_dir (a training "
                "run's workdir) or model.hf_dir (a Hugging Face folder)",
            )  # fmt: skip
            _require(
                bool(self.predict.user) != bool(self.predict.input), "predict.input",
                "mode 'predict' needs either predict.user and predict.item, or predict.input "
                "(a JSONL file of {history, item} records), not both",
            )  # fmt: skip
        if self.mode == "eval":
            _require(
                bool(self.checkpoint.resume_from or self.model.hf_dir),
                "checkpoint.resume_from",
                "mode 'eval' evaluates given weights: set checkpoint.resume_from (an Orbax "
                "checkpoint) or model.hf_dir (a Hugging Face folder)",
            )
        if "grpo" in self.phases:
            _require(
                self.grpo.overlong_buffer < self.sampling.max_new_tokens,
                "grpo.overlong_buffer",
                f"{self.grpo.overlong_buffer} must be below sampling.max_new_tokens="
                f"{self.sampling.max_new_tokens} (the buffer is the last tokens before it)",
            )
        if self.model.attention == "cudnn":
            lengths = {
                "sampling.max_new_tokens": (self.sampling.max_new_tokens,),
                "sampling.prompt_buckets": self.sampling.prompt_buckets,
                "sft.max_response_tokens": (self.sft.max_response_tokens,),
            }
            for key, values in lengths.items():
                _require(
                    all(v % 2 == 0 for v in values),
                    key,
                    f"model.attention='cudnn' trains on even lengths only (cuDNN's masked "
                    f"fused attention), got {values if len(values) > 1 else values[0]}",
                )
        if "sft" in self.phases:
            _require(
                self.sft.traces != "file" or as_path(self.sft.traces_path).is_file(),
                "sft.traces_path",
                f"{self.sft.traces_path!r} is not a file (sft.traces='file' reads JSONL traces)",
            )

    def check_devices(self, num_devices: int) -> None:
        """Rules that need the device count: the mesh fits, and every batch that is split
        over the mesh's batch shards (data x fsdp) divides by them."""
        from reczero_jax.sharding import ShardingError, resolve_mesh_shape

        try:
            data, fsdp, _ = resolve_mesh_shape(self.mesh.shape, num_devices)
        except ShardingError as e:
            raise ConfigError(f"config.mesh.shape: {e}") from None
        shards = data * fsdp
        sizes = {"eval.batch_size": self.eval.batch_size}
        if "sft" in self.phases:
            sizes["sft.batch_size"] = self.sft.batch_size
        if "grpo" in self.phases:
            sizes["grpo.prompts_per_step"] = self.grpo.prompts_per_step
            per_mini = self.grpo.prompts_per_step // self.grpo.mini_batches
            sizes["grpo.mini_batches"] = per_mini
        for key, size in sizes.items():
            what = "groups per mini-batch" if key == "grpo.mini_batches" else "size"
            _require(
                size % shards == 0,
                key,
                f"the {what} {size} must be a multiple of the mesh's batch shards "
                f"(data x fsdp = {shards})",
            )


def initialize_distributed(d: DistributedSettings) -> None:
    """``jax.distributed.initialize`` (once per process, before any device is used); on
    CPU the collectives go through gloo."""
    import jax

    if jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=d.coordinator_address or None,
        num_processes=d.num_processes or None,
        process_id=None if d.process_id < 0 else d.process_id,
    )


def load_settings(config, num_devices: int | None = None) -> Settings:
    """Validates a ConfigDict (or any nested mapping) into :class:`Settings`, including the
    rules that need the device count (``num_devices``; default: ``jax.device_count()``)."""
    settings = from_mapping(Settings, config, "config")
    if settings.distributed.enabled:
        initialize_distributed(settings.distributed)
    if settings.phases:  # the training modes: batches split over the mesh
        if num_devices is None:
            import jax

            num_devices = jax.device_count()
        settings.check_devices(num_devices)
    return settings


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
