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

MODES = ("generate", "baselines")
DTYPES = ("float32", "bfloat16")
REMAT = ("none", "full", "dots")
DEFAULT_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config.{key}: {message}")


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

    def __post_init__(self):
        _require(self.mode in MODES, "mode", f"must be one of {MODES}, got {self.mode!r}")
        _require(
            self.mode != "baselines" or bool(self.workdir),
            "workdir",
            "mode 'baselines' writes results.json there; set --config.workdir=DIR",
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
