"""Data: readers, splits, leak-free examples, prompts, the synthetic world, the teacher.

The TFDS builder lives in ``reczero_jax.data.tfds_builder`` (imported on demand: it
pulls in tensorflow_datasets).
"""

from reczero_jax.data.data_config import BaselinesConfig, DataConfig, PromptConfig, SyntheticConfig
from reczero_jax.data.examples import Example, HistoryEntry, ItemReview, build_examples
from reczero_jax.data.loader import LoadedData, load_data, load_raw
from reczero_jax.data.prompts import (
    FOUR_STEP_TAGS,
    INSTRUCTIONS,
    Prompt,
    PromptTooLongError,
    build_prompt,
)
from reczero_jax.data.readers import DataError, read_source
from reczero_jax.data.splits import assign_splits
from reczero_jax.data.synthetic import World, bayes_floor, make_world
from reczero_jax.data.tables import Item, Ratings, ReadReport, SourceData
from reczero_jax.data.teacher import teacher_rating, teacher_trace

__all__ = [
    "FOUR_STEP_TAGS",
    "INSTRUCTIONS",
    "BaselinesConfig",
    "DataConfig",
    "DataError",
    "Example",
    "HistoryEntry",
    "Item",
    "ItemReview",
    "LoadedData",
    "Prompt",
    "PromptConfig",
    "PromptTooLongError",
    "Ratings",
    "ReadReport",
    "SourceData",
    "SyntheticConfig",
    "World",
    "assign_splits",
    "bayes_floor",
    "build_examples",
    "build_prompt",
    "load_data",
    "load_raw",
    "make_world",
    "read_source",
    "teacher_rating",
    "teacher_trace",
]
