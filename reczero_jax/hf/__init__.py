"""Hugging Face interop: safetensors IO, the parameter mapping table, load and export."""

from reczero_jax.hf.checkpoint import HFCheckpointError, export_hf, load_hf_params
from reczero_jax.hf.param_mapping import PARAM_TABLE, ParamRow, expected_params
from reczero_jax.hf.safetensors_io import (
    SafetensorsCheckpoint,
    SafetensorsError,
    load_safetensors,
    save_safetensors,
    save_sharded_safetensors,
)

__all__ = [
    "PARAM_TABLE",
    "HFCheckpointError",
    "ParamRow",
    "SafetensorsCheckpoint",
    "SafetensorsError",
    "export_hf",
    "expected_params",
    "load_hf_params",
    "load_safetensors",
    "save_safetensors",
    "save_sharded_safetensors",
]
