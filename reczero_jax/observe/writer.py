"""The one metric writer: a JSON-lines file plus TensorBoard scalars, written by process 0 only.

Each ``MetricWriter.write(step, metrics)`` call becomes

* one line of ``<workdir>/metrics.jsonl``: ``{"step": s, "time": unix_seconds, "<name>": value}``
  (non-finite values are written as ``null``, so the file stays strict JSON);
* one TensorBoard scalar per finite value under ``<workdir>/tensorboard/`` (non-finite values are
  skipped there).

Names are passed through unchanged; use namespaced names such as ``reward/mean``,
``format/valid_frac``, ``perf/rollout_tokens_per_s`` (TensorBoard groups on the prefix).

The JSONL file is opened for appending. After a resume from a checkpoint older than the last
logged step, the steps in between are logged again, so a step may appear on several lines; a
reader should keep the last line for each step. TensorBoard handles the same case by itself
(a new event file per run; it shows the later points).

The workdir may be local or remote (``gs://``; :mod:`reczero_jax.paths`). Local: both files are
appended to and flushed at every ``write``, so a crash loses at most the line being written.
Remote (an object store cannot append): both files go through
:class:`reczero_jax.paths.AppendFile`, which keeps their content in memory (the JSONL starting
from what the object already holds, so a resumed run still appends) and rewrites each whole
object when flushed. ``write`` uploads them when at least ``remote_flush_s`` seconds (default
10) have passed since the last upload, ``flush`` and ``close`` always do (the run closes the
writer at its end and when preempted). Lines written in between stay in memory until then, so
a crash loses them: at most ``remote_flush_s`` seconds' worth of writes. Each upload rewrites
both files whole (a few MB for a long run).

Only process 0 writes (``enabled`` defaults to ``jax.process_index() == 0``). On other
processes every method is a cheap no-op and no file or directory is created.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping

import numpy as np
from etils import epath

from reczero_jax.observe.tensorboard import EventFileWriter
from reczero_jax.paths import AppendFile, as_path, is_remote

JSONL_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
_RESERVED = ("step", "time")


def to_python_scalar(name: str, value) -> int | float:
    """``value`` (Python, numpy or JAX scalar, or a size-1 array) as a Python int or float.

    Bools become ints. Raises ``TypeError`` naming ``name`` for anything else (strings, arrays
    with more than one element).
    """
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | float):
        return value
    try:
        arr = np.asarray(value)  # numpy/jax scalars and 0-d or size-1 arrays
    except Exception as e:  # noqa: BLE001 - re-raised with the metric's name
        raise TypeError(
            f"metric {name!r}: cannot convert {type(value).__name__} to a number"
        ) from e
    if arr.size != 1 or arr.dtype.kind not in "biuf":
        raise TypeError(
            f"metric {name!r} must be a real scalar, got {type(value).__name__} "
            f"with shape {arr.shape} and dtype {arr.dtype}"
        )
    item = arr.reshape(()).item()
    return int(item) if arr.dtype.kind in "biu" else float(item)


def _default_enabled() -> bool:
    import jax  # imported lazily: constructing a disabled writer never initialises JAX

    return jax.process_index() == 0


class MetricWriter:
    """Writes metrics to ``<workdir>/metrics.jsonl`` and ``<workdir>/tensorboard/``.

    Args:
      workdir: the run directory (created if missing), local or remote.
      enabled: whether this process writes; ``None`` means ``jax.process_index() == 0``.
      remote_flush_s: for a remote workdir, the least seconds between two uploads caused by
        ``write`` (module docstring); ignored for a local one.

    Use as a context manager or call ``close()``. Locally ``write`` flushes both files, so a
    crash loses at most the line being written.
    """

    def __init__(
        self, workdir: str | os.PathLike, enabled: bool | None = None, remote_flush_s: float = 10.0
    ):
        self.workdir = as_path(workdir)
        self.enabled = _default_enabled() if enabled is None else bool(enabled)
        self.remote_flush_s = float(remote_flush_s) if is_remote(self.workdir) else 0.0
        self._last_flush = -math.inf
        self._jsonl: AppendFile | None = None
        self._tb = None
        if self.enabled:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._jsonl = AppendFile(self.workdir / JSONL_NAME)
            self._tb = EventFileWriter(self.workdir / TENSORBOARD_DIR)
            self._last_flush = time.monotonic()

    @property
    def jsonl_path(self) -> epath.Path:
        return self.workdir / JSONL_NAME

    @property
    def tensorboard_dir(self) -> epath.Path:
        return self.workdir / TENSORBOARD_DIR

    def write(self, step: int, metrics: Mapping[str, float | int]) -> None:
        """Log ``metrics`` at ``step``: one JSON line and one TensorBoard scalar per finite value.

        Values may be Python, numpy or JAX scalars (the JAX ones are fetched to the host here,
        which waits for them). Raises ``ValueError`` for the reserved names ``step``/``time``
        and ``TypeError`` for non-scalar values, naming the metric; nothing is written then.
        """
        if not self.enabled:
            return
        if self._jsonl is None:
            raise ValueError(f"MetricWriter for {self.workdir} is closed")
        step = int(step)
        clean: dict[str, int | float] = {}
        for name, value in metrics.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"metric names must be non-empty strings, got {name!r}")
            if name in _RESERVED:
                raise ValueError(f"metric name {name!r} is reserved for the JSONL record")
            clean[name] = to_python_scalar(name, value)
        now = time.time()
        record: dict[str, int | float | None] = {"step": step, "time": now}
        for name, value in clean.items():
            finite = isinstance(value, int) or math.isfinite(value)
            record[name] = value if finite else None
            if finite:
                self._tb.scalar(name, value, step, wall_time=now)
        self._jsonl.write((json.dumps(record, allow_nan=False) + "\n").encode("utf-8"))
        if time.monotonic() - self._last_flush >= self.remote_flush_s:  # always when local
            self.flush()

    def flush(self) -> None:
        if self._jsonl is not None:
            self._jsonl.flush()
            self._tb.flush()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and close both files; later ``write`` calls raise. Safe to call twice."""
        if self._jsonl is not None:
            self._jsonl.close()
            self._tb.close()
            self._jsonl = None
            self._tb = None

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` file, in order (``null`` comes back as ``None``);
    a line that is not JSON (a run killed while writing it) is skipped with a warning."""
    from reczero_jax.observe.logs import log

    rows = []
    for number, line in enumerate(as_path(path).read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            log.warning("%s line %d is not JSON; skipped", path, number)
    return rows
