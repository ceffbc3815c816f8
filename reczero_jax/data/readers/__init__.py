"""Readers that normalise each source's files into ``SourceData``."""

from __future__ import annotations

from reczero_jax.data.errors import DataError
from reczero_jax.data.readers.amazon import read_amazon
from reczero_jax.data.readers.movielens import read_movielens
from reczero_jax.data.readers.yelp import read_yelp
from reczero_jax.data.tables import SourceData


def read_source(source: str, path: str, meta_path: str = "") -> SourceData:
    """Reads a non-synthetic source ('amazon2014' ... 'movielens1m') from the user's files."""
    if source.startswith("amazon"):
        return read_amazon(path, meta_path, source)
    if source == "yelp":
        return read_yelp(path, meta_path)
    if source.startswith("movielens"):
        return read_movielens(path, meta_path, source)
    raise DataError(f"no file reader for source {source!r}")


__all__ = ["DataError", "read_source"]
