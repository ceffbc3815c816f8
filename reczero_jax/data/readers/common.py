"""File access shared by the readers: line iteration that never dies halfway through a
file, and a row collector that validates each record and counts what it skips. Files may be
local or remote (``gs://``): every path is an ``epath.Path`` (:mod:`reczero_jax.paths`)."""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import zlib
from collections.abc import Iterator

from etils import epath

from reczero_jax.data.errors import DataError
from reczero_jax.data.tables import Item, Ratings, ReadReport, SourceData
from reczero_jax.paths import as_path


def require_file(path: str | os.PathLike, what: str) -> epath.Path:
    """Returns ``path`` as a Path, or raises DataError saying which file is missing."""
    p = as_path(path)
    if not p.is_file():
        raise DataError(f"{what} {p} does not exist or is not a file")
    return p


def iter_lines(
    path: epath.Path, report: ReadReport, encoding: str = "utf-8"
) -> Iterator[tuple[int, str]]:
    """Yields (line number from 1, decoded line without newline) of a plain or gzip file.

    Lines that do not decode count as 'bad_encoding' and are skipped; a truncated or
    corrupt gzip stream ends the file with one 'truncated_file' count. Blank lines are
    ignored.
    """
    path = as_path(path)
    with path.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    lineno = 0
    try:
        with (
            path.open("rb") as file,
            gzip.GzipFile(fileobj=file) if gz else contextlib.nullcontext(file) as f,
        ):
            for raw in f:
                lineno += 1
                if not raw.strip():
                    continue
                report.lines_read += 1
                try:
                    line = raw.decode(encoding)
                except UnicodeDecodeError:
                    report.skip(path.name, "bad_encoding")
                    continue
                yield lineno, line.rstrip("\r\n")
    except (EOFError, OSError, zlib.error):
        report.skip(path.name, f"truncated_file (after line {lineno})")


def as_text(value) -> str:
    """A field as text: lists are joined with spaces, None is ''."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " ".join(as_text(v) for v in value if v is not None).strip()
    return str(value).strip()


class RowCollector:
    """Accumulates validated rating rows of one file; ``finish`` builds the table."""

    def __init__(self, file: str, report: ReadReport):
        self.file, self.report = file, report
        self.users: list[str] = []
        self.items: list[str] = []
        self.ratings: list[float] = []
        self.timestamps: list[int] = []
        self.reviews: list[str] = []
        self.summaries: list[str] = []

    def add(self, user, item, rating, timestamp, review="", summary="") -> bool:
        """Validates one record; returns False (and counts the reason) when skipped.

        ``timestamp`` must already be seconds since the epoch (int or numeric str).
        """
        for name, value in (("user", user), ("item", item), ("rating", rating)):
            if value is None or value == "":
                self.report.skip(self.file, f"missing_field:{name}")
                return False
        if timestamp is None or timestamp == "":
            self.report.skip(self.file, "missing_field:timestamp")
            return False
        try:
            r = float(rating)
        except (TypeError, ValueError):
            self.report.skip(self.file, "bad_rating")
            return False
        if not (math.isfinite(r) and 1.0 <= r <= 5.0):
            self.report.skip(self.file, "rating_out_of_range")
            return False
        try:
            t = int(float(timestamp))
        except (TypeError, ValueError, OverflowError):
            self.report.skip(self.file, "bad_timestamp")
            return False
        self.users.append(str(user))
        self.items.append(str(item))
        self.ratings.append(r)
        self.timestamps.append(t)
        self.reviews.append(as_text(review))
        self.summaries.append(as_text(summary))
        self.report.kept += 1
        return True

    def finish(self, path: epath.Path, items: dict[str, Item]) -> SourceData:
        """The SourceData; raises DataError when no row survived."""
        if not self.users:
            raise DataError(
                f"{path}: no usable rating was read ({self.report.lines_read} lines; "
                f"skipped: {self.report.skipped or 'none'})"
            )
        ratings = Ratings.from_columns(
            self.users, self.items, self.ratings, self.timestamps, self.reviews, self.summaries
        )
        known = sum(1 for i in ratings.item_ids if i in items and items[i].has_text())
        missing = ratings.num_items - known
        if missing:
            self.report.note("items without meta text (text built from earlier reviews)", missing)
        return SourceData(ratings=ratings, items=items, report=self.report)
