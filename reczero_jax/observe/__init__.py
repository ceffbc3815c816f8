"""Observability: the metric writer (JSONL + TensorBoard), console progress and phase timing."""

from reczero_jax.observe.progress import PhaseTimer, Progress
from reczero_jax.observe.tensorboard import EventFileWriter, read_scalars
from reczero_jax.observe.writer import MetricWriter, read_jsonl

__all__ = [
    "EventFileWriter",
    "MetricWriter",
    "PhaseTimer",
    "Progress",
    "read_jsonl",
    "read_scalars",
]
