"""Checkpoints: one Orbax ``CheckpointManager`` per run directory, and the resume rule.

Layout of a checkpoint directory (one per run, usually ``<workdir>/checkpoints``)::

    <directory>/<step>/state/     the training-state pytree (StandardSave / StandardRestore)
    <directory>/<step>/meta/      a JSON dict (JsonSave / JsonRestore): step, data position,
                                  the config as a dict, metrics, ...
    <directory>/<step>/metrics/   only for steps saved with ``metrics`` (evaluation steps):
                                  Orbax's own JSON copy of those metrics, which its
                                  preservation policy ranks and which is read back when the
                                  directory is opened again (so the best survives a restart)

Every step folder is a whole checkpoint and a possible resume point; there is no separate
``best/`` folder. Which steps remain is Orbax's preservation policy, applied after each save:
a step is kept if it is one of the newest ``keep_latest`` (``LatestN``) or, when
``best_metric`` is set, one of the ``keep_best`` best by that metric (``BestN``), combined with
``AnyPreservationPolicy``; every other step is deleted. Only steps saved with a finite value of
``best_metric`` take part in the ranking: a step saved without metrics, without that metric, or
with a NaN/inf value is kept by recency alone and never reported as best.

Orbax writes each step into a temporary folder and renames it when complete, so a step folder
that exists is a whole checkpoint (a crash mid-save leaves only a temporary folder, ignored).
On ``gs://`` (no rename) Orbax writes the step folder in place and marks it complete with a
``commit_success.txt`` file last; a folder without it is ignored the same way. Directories may
be any :mod:`reczero_jax.paths` path (local or ``gs://``).

The state is any pytree of arrays, e.g. ``{'params', 'opt_state', 'step', 'rng'}``. Optax states
(namedtuples inside tuples, ``EmptyState()``), Python scalars and typed PRNG key arrays
(``jax.random.key``) round-trip as they are: Orbax 0.12.8 stores a typed key as its uint32 key
data and re-wraps it with the implementation of the restore target's dtype, so no
``key_data``/``wrap_key_data`` conversion is needed here. Raw uint32 key data works as well.

Restoring is always onto a target: a pytree of ``jax.ShapeDtypeStruct`` with ``.sharding`` set
(e.g. from ``jax.eval_shape`` plus the shardings the step function uses), or concrete arrays
whose shapes, dtypes and shardings are taken. Arrays are read directly into that sharding, on
any mesh shape; nothing is gathered on one device.

Saving is asynchronous by default: ``save`` returns as soon as the arrays are copied to host
memory (the next step may then donate or overwrite the state) and the files are written by a
background thread; a following ``save`` first waits for the previous one. A ``force=True``
save (the last step) returns only once the checkpoint is on disk. Before the process exits the
caller must ``close()`` (or leave a ``with Checkpointer(...)`` block), which waits for pending
saves. An ``atexit`` hook cannot rescue a pending save: by the time it runs, Python has shut
down the executors Orbax writes with, and the step is left as an unfinished temporary folder.
With ``async_save=False`` every save returns once it is on disk. In a multi-process run every
process must make the same calls, in the same order, with the same metrics.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from typing import Any, Literal

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as ocp_managers

from reczero_jax import paths

STATE, META = "state", "meta"

_log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------------------------
def checkpoint_steps(directory: str | os.PathLike) -> list[int]:
    """The finished checkpoint steps in ``directory``, ascending (``[]`` if it does not exist)."""
    path = paths.as_path(directory)
    if not path.is_dir():
        return []
    return sorted(ocp.utils.checkpoint_steps(path))


def _to_json(value: Any, where: str = "meta") -> Any:
    """``value`` with numpy/JAX scalars turned into Python numbers and tuples into lists."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: JSON keys must be strings, got {k!r}")
            out[k] = _to_json(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic | np.ndarray | jax.Array) and np.size(value) == 1:
        return np.asarray(value).reshape(()).item()
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serialisable")


def _restore_target(abstract_state: Any) -> Any:
    """Concrete ``jax.Array`` leaves become ``ShapeDtypeStruct``s; every one needs a sharding."""

    def leaf(path, x):
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        if isinstance(x, jax.ShapeDtypeStruct) and x.sharding is None:
            raise ValueError(
                f"restore target {jax.tree_util.keystr(path)} is a ShapeDtypeStruct without "
                "a sharding; set .sharding so the array is restored where it will be used"
            )
        return x

    return jax.tree_util.tree_map_with_path(leaf, abstract_state)


def _reading_manager(directory: epath.Path):
    # Not ``read_only=True``: that only adds warnings; a manager that never saves writes nothing.
    options = ocp.CheckpointManagerOptions(create=False)
    return ocp.CheckpointManager(directory, options=options, item_names=(STATE, META))


def _finite_metric(metrics: Any, name: str | None) -> float | None:
    """``metrics[name]`` as a float if present, numeric and finite, else None."""
    if name is None or not isinstance(metrics, Mapping) or name not in metrics:
        return None
    try:
        value = float(metrics[name])
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _ranking_fn(name: str | None, mode: Literal["min", "max"]):
    """Orbax's ``get_metric_fn``/``best_fn``: the metric, or the worst value if unusable.

    ``BestN`` calls it on every step that has a metrics dict; it must not raise (a directory
    written with another ``best_metric``) and NaN must not reach ``sorted``.
    """
    worst = math.inf if mode == "min" else -math.inf

    def fn(metrics: Any) -> float:
        value = _finite_metric(metrics, name)
        return worst if value is None else value

    return fn


# Orbax logs this warning at every save without metrics once ``best_fn`` is set (which it must
# be for the metrics to be written to disk); saves between evaluations have none on purpose.
_NO_METRICS_WARNING = "Requested `tracked_metric`; did not provide metrics."


class _DropNoMetricsWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != _NO_METRICS_WARNING


def _install_warning_filter() -> None:
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _DropNoMetricsWarning) for f in absl_logger.filters):
        absl_logger.addFilter(_DropNoMetricsWarning())


def _save_args(state: Any, meta: Mapping[str, Any]) -> ocp.args.Composite:
    return ocp.args.Composite(
        **{STATE: ocp.args.StandardSave(state), META: ocp.args.JsonSave(_to_json(meta))}
    )


def _restore(manager, step: int, abstract_state: Any, partial: bool = False) -> tuple[Any, dict]:
    steps = manager.all_steps()
    if step not in steps:
        raise FileNotFoundError(
            f"no checkpoint for step {step} in {manager.directory}; available: {sorted(steps)}"
        )
    target = _restore_target(abstract_state)
    if partial:  # read only the requested entries, straight into their shardings
        restore_args = jax.tree.map(
            lambda t: ocp.ArrayRestoreArgs(
                sharding=t.sharding, global_shape=t.shape, dtype=t.dtype
            ),
            target,
        )
        state_args = ocp.args.PyTreeRestore(target, restore_args, partial_restore=True)
    else:
        state_args = ocp.args.StandardRestore(target)
    args = ocp.args.Composite(**{STATE: state_args, META: ocp.args.JsonRestore()})
    try:
        restored = manager.restore(step, args=args)
    except Exception as e:
        e.add_note(f"while restoring step {step} from {manager.directory}")
        raise
    state = restored[STATE]
    if partial:
        state = {key: state[key] for key in abstract_state}
    return state, dict(restored[META] or {})


def restore_checkpoint(
    directory: str | os.PathLike, step: int | None, abstract_state: Any, partial: bool = False
) -> tuple[Any, dict]:
    """Restore ``(state, meta)`` of ``step`` (``None``: the latest) from another run's directory.

    Read-only: nothing in ``directory`` is created, changed or deleted. With ``partial``,
    ``abstract_state`` may hold a subset of the saved tree (e.g. ``{'params': ...}`` alone,
    to start a new phase from a checkpoint written with another optimizer).
    """
    path = paths.as_path(directory)
    steps = checkpoint_steps(path)
    if not steps:
        raise FileNotFoundError(f"no Orbax checkpoint in {path}")
    manager = _reading_manager(path)
    try:
        return _restore(manager, steps[-1] if step is None else int(step), abstract_state, partial)
    finally:
        manager.close()


# ---------------------------------------------------------------------------------------------
# Checkpointer.
# ---------------------------------------------------------------------------------------------
class Checkpointer:
    """One Orbax ``CheckpointManager`` keeping the newest checkpoints and the best by a metric.

    Args:
      directory: the run's checkpoint directory (created if missing).
      save_every: ``save`` saves at steps divisible by this (``>= 1``), and at any step given
        ``metrics`` or ``force``.
      keep_latest: how many of the newest checkpoints to keep (``>= 1``).
      best_metric: the name of the metric, in the ``metrics`` passed to ``save``, that ranks
        checkpoints; ``None``: keep by recency only (metrics are still recorded).
      best_mode: ``'min'`` (lower is better, e.g. MAE) or ``'max'``.
      keep_best: how many of the best checkpoints by ``best_metric`` to keep besides the newest
        (``>= 1``); a checkpoint may count for both.
      async_save: write in the background (then ``close()`` before exit); a forced save waits.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        save_every: int,
        keep_latest: int = 2,
        best_metric: str | None = None,
        best_mode: Literal["min", "max"] = "min",
        keep_best: int = 1,
        async_save: bool = True,
    ):
        for name, value in (
            ("save_every", save_every),
            ("keep_latest", keep_latest),
            ("keep_best", keep_best),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
        self.directory = paths.absolute(directory)
        self.save_every = save_every
        self.keep_latest = keep_latest
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.keep_best = keep_best
        self.async_save = bool(async_save)

        ranking = _ranking_fn(best_metric, best_mode)
        policies: list[Any] = [ocp_managers.LatestN(n=keep_latest)]
        if best_metric is not None:
            # Orbax sorts ascending (descending with reverse) and keeps the last n. Steps saved
            # without metrics are left to LatestN (keep_checkpoints_without_metrics=False;
            # the default True would keep every one of them forever).
            policies.append(
                ocp_managers.BestN(
                    get_metric_fn=ranking,
                    reverse=best_mode == "min",
                    n=keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            create=True,
            enable_async_checkpointing=self.async_save,
            preservation_policy=ocp_managers.AnyPreservationPolicy(policies),
            # best_fn does not decide what is kept (preservation_policy does), but without it
            # Orbax 0.12.8 does not write <step>/metrics, and BestN would forget every
            # evaluation when the directory is opened again.
            best_fn=ranking,
            best_mode=best_mode,
        )
        _install_warning_filter()
        self._manager: ocp.CheckpointManager | None = ocp.CheckpointManager(
            self.directory, options=options, item_names=(STATE, META)
        )
        # best_metric's finite value per step, from Orbax's metrics files of earlier runs.
        self._values: dict[int, float] = {}
        for step in self._manager.all_steps():
            value = _finite_metric(self._manager.metrics(step), best_metric)
            if value is not None:
                self._values[int(step)] = value

    # -- saving ----------------------------------------------------------------------------------
    def save(
        self,
        step: int,
        state: Any,
        meta: Mapping[str, Any],
        *,
        metrics: Mapping[str, float] | None = None,
        force: bool = False,
    ) -> bool:
        """Save ``state`` and ``meta`` at ``step``; returns whether a save was started.

        Saves when ``force``, or ``step % save_every == 0``, or ``metrics`` is given (an
        evaluation step, so that the best can be kept). A step that is already saved (e.g. the
        step just restored) is skipped and returns False, even with ``metrics``: evaluate
        before saving, and pass the metrics in the one call for that step. ``meta`` must be
        JSON-like (numpy/JAX scalars are converted); ``"step"`` is added to it. ``metrics``
        (name -> number) are recorded with the checkpoint and rank it by ``best_metric``; if
        that metric is missing or not finite, the checkpoint is saved as one without metrics
        (kept by recency only, never best).

        Returns once the arrays are copied to host memory (asynchronous saves) or once the
        checkpoint is on disk (``force=True``, or ``async_save=False``).
        """
        manager = self._open()
        step = int(step)
        if not (force or metrics is not None or step % self.save_every == 0):
            return False
        if step in manager.all_steps():
            return False
        record, value = None, None
        if metrics is not None:
            record = _to_json(dict(metrics), "metrics")
            if self.best_metric is not None:
                value = _finite_metric(record, self.best_metric)
                if value is None:
                    _log.warning(
                        "step %d: metric %r is missing or not finite in %r; the checkpoint "
                        "is kept by recency only",
                        step,
                        self.best_metric,
                        record,
                    )
                    record = None
        saved = manager.save(
            step,
            args=_save_args(state, {**meta, "step": step}),
            metrics=record,
            force=True,
        )
        if saved and value is not None:
            self._values[step] = value
        if force or not self.async_save:
            manager.wait_until_finished()
        return bool(saved)

    # -- queries ---------------------------------------------------------------------------------
    def latest_step(self) -> int | None:
        """The newest finished checkpoint step (waits for a pending save), or None."""
        manager = self._open()
        manager.wait_until_finished()
        return manager.latest_step()

    def all_steps(self) -> list[int]:
        """All finished checkpoint steps, ascending (waits for a pending save)."""
        manager = self._open()
        manager.wait_until_finished()
        return sorted(int(s) for s in manager.all_steps())

    def best_step(self) -> int | None:
        """The kept step with the best finite ``best_metric`` (waits for a pending save).

        None without ``best_metric`` or before any evaluated checkpoint. Of equal values the
        newest step counts, the one Orbax's ``BestN`` keeps.
        """
        if self.best_metric is None:
            return None
        steps = set(self.all_steps())
        candidates = [(v, s) for s, v in self._values.items() if s in steps]
        if not candidates:
            return None
        sign = 1.0 if self.best_mode == "min" else -1.0
        return min(candidates, key=lambda vs: (sign * vs[0], -vs[1]))[1]

    def restore(self, step: int | None, abstract_state: Any) -> tuple[Any, dict]:
        """``(state, meta)`` of checkpoint ``step`` (``None``: the latest).

        ``abstract_state``: the target pytree, ``ShapeDtypeStruct``s with ``.sharding`` set or
        concrete arrays; the restored arrays have exactly those shardings.
        """
        manager = self._open()
        manager.wait_until_finished()
        if step is None:
            step = manager.latest_step()
            if step is None:
                raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return _restore(manager, int(step), abstract_state)

    # -- lifetime --------------------------------------------------------------------------------
    def _open(self) -> ocp.CheckpointManager:
        if self._manager is None:
            raise ValueError(f"Checkpointer for {self.directory} is closed")
        return self._manager

    def wait_until_finished(self) -> None:
        """Block until pending saves are on disk."""
        if self._manager is not None:
            self._manager.wait_until_finished()

    def close(self) -> None:
        """Wait for pending saves and release Orbax's resources. Safe to call twice."""
        manager, self._manager = self._manager, None
        if manager is None:
            return
        try:
            manager.wait_until_finished()
        finally:
            manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
