"""The decoder's architecture, read from (and written back to) a Hugging Face ``config.json``.

One frozen dataclass covers the three families we support:

* Qwen2 / Qwen2.5: q/k/v projections with bias, tied or untied embeddings;
* Qwen3: RMSNorm on q and k per head, an explicit ``head_dim`` that may differ from
  ``hidden_size // num_attention_heads``, no q/k/v bias;
* Llama 3.x: optional ``attention_bias`` / ``mlp_bias`` and RoPE scaling of type ``llama3``.

transformers 5 writes the RoPE base and scaling under ``rope_parameters``; older files
keep ``rope_theta`` at top level and the scaling under ``rope_scaling``. Both are read.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

SUPPORTED_MODEL_TYPES = ("qwen2", "qwen3", "llama")


class ModelConfigError(ValueError):
    """A config.json that this decoder cannot represent faithfully."""


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama 3 frequency-dependent RoPE scaling (``rope_type == 'llama3'``)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes and numerics of one decoder-only transformer.

    Attributes:
      model_type: 'qwen2', 'qwen3' or 'llama' (the ``model_type`` of config.json).
      vocab_size: V, rows of the embedding table.
      hidden_size: D, the residual width.
      intermediate_size: F, the SwiGLU hidden width.
      num_layers: L.
      num_heads: Hq, query heads.
      num_kv_heads: Hkv, key/value heads (GQA when Hkv < Hq, MQA when Hkv == 1).
      head_dim: Dh, per-head width (Qwen3 may set it apart from D // Hq).
      rope_theta: RoPE base.
      rope_scaling: Llama 3 scaling, or None for plain RoPE.
      rms_norm_eps: epsilon of every RMSNorm.
      qkv_bias: q/k/v projections carry a bias (Qwen2; Llama with attention_bias).
      o_bias: the output projection carries a bias (Llama with attention_bias).
      mlp_bias: the three MLP projections carry a bias (Llama with mlp_bias).
      qk_norm: RMSNorm over each head of q and k before RoPE (Qwen3).
      tie_word_embeddings: the LM head reuses the embedding table.
      max_position_embeddings: the longest sequence the checkpoint was trained for.
      bos_token_id / eos_token_ids: from config.json (eos may be a list).
      hf_config: the original config.json as a dict (written back on export), or None.
    """

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    rms_norm_eps: float = 1e-6
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 32768
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    hf_config: dict[str, Any] | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ModelConfigError(
                f"model_type {self.model_type!r} is not supported; expected one of "
                f"{SUPPORTED_MODEL_TYPES}"
            )
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
        ):
            if getattr(self, name) <= 0:
                raise ModelConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_heads % self.num_kv_heads:
            raise ModelConfigError(
                f"num_attention_heads ({self.num_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            raise ModelConfigError(f"head_dim must be even for RoPE, got {self.head_dim}")

    @property
    def num_groups(self) -> int:
        """Query heads per key/value head."""
        return self.num_heads // self.num_kv_heads

    def num_params(self) -> int:
        """Parameter count (embedding counted once when tied)."""
        d, f, v = self.hidden_size, self.intermediate_size, self.vocab_size
        hq, hkv, dh = self.num_heads, self.num_kv_heads, self.head_dim
        attn = d * hq * dh + 2 * d * hkv * dh + hq * dh * d
        if self.qkv_bias:
            attn += hq * dh + 2 * hkv * dh
        if self.o_bias:
            attn += d
        if self.qk_norm:
            attn += 2 * dh
        mlp = 3 * d * f + (2 * f + d if self.mlp_bias else 0)
        per_layer = attn + mlp + 2 * d
        head = 0 if self.tie_word_embeddings else d * v
        return v * d + self.num_layers * per_layer + d + head

    # ------------------------------------------------------------------ HF interop
    @classmethod
    def from_hf_dict(cls, cfg: dict[str, Any]) -> ModelConfig:
        """Builds a ModelConfig from the dict of a Hugging Face config.json."""
        model_type = cfg.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ModelConfigError(
                f"config.json has model_type {model_type!r}; supported: {SUPPORTED_MODEL_TYPES}"
            )
        if cfg.get("hidden_act", "silu") != "silu":
            raise ModelConfigError(f"hidden_act {cfg.get('hidden_act')!r} is not supported (silu)")
        if cfg.get("use_sliding_window", False):
            raise ModelConfigError("use_sliding_window=true is not supported")
        try:
            d = int(cfg["hidden_size"])
            num_heads = int(cfg["num_attention_heads"])
            num_kv_heads = int(cfg.get("num_key_value_heads") or num_heads)
            head_dim = cfg.get("head_dim") or d // num_heads
            rope_params = dict(cfg.get("rope_parameters") or {})
            legacy_scaling = dict(cfg.get("rope_scaling") or {})
            rope_theta = rope_params.get("rope_theta") or cfg.get("rope_theta") or 10000.0
            scaling_src = (
                rope_params if rope_params.get("rope_type") not in (None, "default") else {}
            )
            if not scaling_src and legacy_scaling:
                scaling_src = legacy_scaling
            rope_type = scaling_src.get("rope_type", scaling_src.get("type", "default"))
            if rope_type == "llama3":
                rope_scaling = RopeScaling(
                    factor=float(scaling_src["factor"]),
                    low_freq_factor=float(scaling_src["low_freq_factor"]),
                    high_freq_factor=float(scaling_src["high_freq_factor"]),
                    original_max_position_embeddings=int(
                        scaling_src["original_max_position_embeddings"]
                    ),
                )
            elif rope_type in (None, "default"):
                rope_scaling = None
            else:
                raise ModelConfigError(f"rope scaling type {rope_type!r} is not supported")
            eos = cfg.get("eos_token_id")
            eos_ids = (
                tuple(int(e) for e in (eos if isinstance(eos, list) else [eos]))
                if eos is not None
                else ()
            )
            if model_type == "qwen2":
                qkv_bias, o_bias, mlp_bias, qk_norm = True, False, False, False
            elif model_type == "qwen3":
                qkv_bias = o_bias = bool(cfg.get("attention_bias", False))
                mlp_bias, qk_norm = False, True
            else:  # llama
                qkv_bias = o_bias = bool(cfg.get("attention_bias", False))
                mlp_bias, qk_norm = bool(cfg.get("mlp_bias", False)), False
            return cls(
                model_type=model_type,
                vocab_size=int(cfg["vocab_size"]),
                hidden_size=d,
                intermediate_size=int(cfg["intermediate_size"]),
                num_layers=int(cfg["num_hidden_layers"]),
                num_heads=num_heads,
                num_kv_heads=num_kv_heads,
                head_dim=int(head_dim),
                rope_theta=float(rope_theta),
                rope_scaling=rope_scaling,
                rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
                qkv_bias=qkv_bias,
                o_bias=o_bias,
                mlp_bias=mlp_bias,
                qk_norm=qk_norm,
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", model_type != "llama")),
                max_position_embeddings=int(cfg.get("max_position_embeddings", 32768)),
                bos_token_id=cfg.get("bos_token_id"),
                eos_token_ids=eos_ids,
                hf_config=dict(cfg),
            )
        except KeyError as e:
            raise ModelConfigError(f"config.json lacks the required field {e.args[0]!r}") from None

    @classmethod
    def from_hf_dir(cls, path: str | pathlib.Path) -> ModelConfig:
        """Reads ``path/config.json``."""
        file = pathlib.Path(path) / "config.json"
        if not file.is_file():
            raise ModelConfigError(f"{file} does not exist: not a Hugging Face checkpoint folder")
        try:
            cfg = json.loads(file.read_text())
        except json.JSONDecodeError as e:
            raise ModelConfigError(f"{file} is not valid JSON: {e}") from None
        return cls.from_hf_dict(cfg)

    def to_hf_dict(self, torch_dtype: str = "float32") -> dict[str, Any]:
        """A config.json dict that transformers loads into the same architecture.

        Starts from the original config.json when there was one, so fields we do not
        model (chat settings, initializer_range...) survive a round trip.
        """
        out = dict(self.hf_config or {})
        arch = {
            "qwen2": "Qwen2ForCausalLM",
            "qwen3": "Qwen3ForCausalLM",
            "llama": "LlamaForCausalLM",
        }
        rope_parameters: dict[str, Any] = {"rope_theta": self.rope_theta, "rope_type": "default"}
        if self.rope_scaling is not None:
            rope_parameters.update(rope_type="llama3", **dataclasses.asdict(self.rope_scaling))
        out.update(
            architectures=[arch[self.model_type]],
            model_type=self.model_type,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            hidden_act="silu",
            rms_norm_eps=self.rms_norm_eps,
            tie_word_embeddings=self.tie_word_embeddings,
            max_position_embeddings=self.max_position_embeddings,
            rope_theta=self.rope_theta,
            rope_parameters=rope_parameters,
            torch_dtype=torch_dtype,
            dtype=torch_dtype,
        )
        out.pop("rope_scaling", None)
        if self.model_type in ("llama", "qwen3"):
            out["attention_bias"] = self.qkv_bias
        if self.model_type == "llama":
            out["mlp_bias"] = self.mlp_bias
        if self.bos_token_id is not None:
            out["bos_token_id"] = self.bos_token_id
        if self.eos_token_ids:
            out["eos_token_id"] = (
                self.eos_token_ids[0] if len(self.eos_token_ids) == 1 else list(self.eos_token_ids)
            )
        return out
