"""The decoder LLM: architecture config, Flax module, RoPE and attention."""

from reczero_jax.model.decoder import (
    Decoder,
    compute_logits,
    lm_head_kernel,
    logits_from_hidden,
    positions_from_mask,
)
from reczero_jax.model.model_config import ModelConfig, ModelConfigError, RopeScaling

__all__ = [
    "Decoder",
    "ModelConfig",
    "ModelConfigError",
    "RopeScaling",
    "compute_logits",
    "lm_head_kernel",
    "logits_from_hidden",
    "positions_from_mask",
]
