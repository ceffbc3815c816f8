"""Checkpoints: a thin layer over Orbax's ``CheckpointManager``, and the resume rule.

Layout of a checkpoint directory (one per run, usually ``<workdir>/checkpoints``)::

    <directory>/<step>/state/   the training-state pytree (StandardSave / StandardRestore)
    <directory>/<step>/meta/    a JSON dict (JsonSave / JsonRestore): step, data position,
                                the config as a dict, metrics, ...
    <directory>/best/<step>/    the single best checkpoint so far (same two items); its meta
                                holds ``best_metric = {"name", "value", "mode"}``

Orbax writes each step into a temporary folder and renames it when complete, so a step folder
that exists is a whole checkpoint (a crash mid-save leaves only a temporary folder, ignored).

The state is any pytree of arrays, e.g. ``{'params', 'opt_state', 'step', 'rng'}``. Optax states
(namedtuples inside tuples, ``EmptyState()``), Python scalars and typed PRNG key arrays
(``jax.random.key``) round-trip as they are: Orbax 0.12.8 stores a typed key as its uint32 key
data and re-wraps it with the implementation of the restore target's dtype, so no
``key_data``/``wrap_key_data`` conversion is needed here. Raw uint32 key data works as well.

Restoring is always onto a target: a pytree of ``jax.ShapeDtypeStruct`` with ``.sharding`` set
(e.g. from ``jax.eval_shape`` plus the shardings the step function uses), or concrete arrays
whose shapes, dtypes and shardings are taken. Arrays are read directly into that sharding, on
any mesh shape; nothing is gathered on one device.

Saving waits by default: ``maybe_save`` returns once the checkpoint is complete on disk, so no
exit path (an exception, ``sys.exit``, a killed job after the call) can lose a save it reported.
With ``async_save=True`` it returns as soon as the arrays are copied to host memory (the next
step may then donate or overwrite the state) and the files are written by a background thread;
the caller must then ``close()`` (or leave a ``with Checkpointer(...)`` block) before exiting.
An ``atexit`` hook cannot rescue a pending save: by the time it runs, Python has shut down the
executors Orbax writes with, and the step is left as an unfinished temporary folder. Forced saves
and best saves always wait. In a multi-process run every process must make the same calls, in
the same order.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from collections.abc import Mapping
from typing import Any, Literal

import jax
import numpy as np
import orbax.checkpoint as ocp

STATE, META = "state", "meta"
BEST_DIR = "best"
BEST_KEY = "best_metric"


# ---------------------------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------------------------
def checkpoint_steps(directory: str | os.PathLike) -> list[int]:
    """The finished checkpoint steps in ``directory``, ascending (``[]`` if it does not exist)."""
    path = pathlib.Path(directory)
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


def _manager(directory: pathlib.Path, max_to_keep: int | None, create: bool = True):
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    return ocp.CheckpointManager(directory, options=options, item_names=(STATE, META))


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
    args = ocp.args.Composite(
        **{
            STATE: ocp.args.StandardRestore(None if partial else _restore_target(abstract_state)),
            META: ocp.args.JsonRestore(),
        }
    )
    try:
        restored = manager.restore(step, args=args)
    except Exception as e:
        e.add_note(f"while restoring step {step} from {manager.directory}")
        raise
    state = restored[STATE]
    if partial:  # keep the requested top-level entries, placed like the target
        state = {
            key: jax.tree.map(
                lambda x, t: jax.device_put(np.asarray(x), getattr(t, "sharding", None)),
                state[key],
                target,
            )
            for key, target in abstract_state.items()
        }
    return state, dict(restored[META] or {})


def restore_checkpoint(
    directory: str | os.PathLike, step: int | None, abstract_state: Any, partial: bool = False
) -> tuple[Any, dict]:
    """Restore ``(state, meta)`` of ``step`` (``None``: the latest) from another run's directory.

    Read-only: nothing in ``directory`` is created, changed or deleted. With ``partial``,
    ``abstract_state`` may hold a subset of the saved tree (e.g. ``{'params': ...}`` alone,
    to start a new phase from a checkpoint written with another optimizer).
    """
    path = pathlib.Path(directory)
    steps = checkpoint_steps(path)
    if not steps:
        raise FileNotFoundError(f"no Orbax checkpoint in {path}")
    manager = _manager(path, max_to_keep=None, create=False)
    try:
        return _restore(manager, steps[-1] if step is None else int(step), abstract_state, partial)
    finally:
        manager.close()


# ---------------------------------------------------------------------------------------------
# Checkpointer.
# ---------------------------------------------------------------------------------------------
class Checkpointer:
    """Periodic checkpoints (the last ``max_to_keep``) plus one best checkpoint in ``best/``.

    Args:
      directory: the run's checkpoint directory (created if missing).
      save_every: ``maybe_save`` saves at steps divisible by this (``>= 1``).
      max_to_keep: how many periodic checkpoints to keep (oldest deleted first).
      best_metric: the name of the metric ``save_best`` compares (recorded in the best meta);
        ``None`` disables ``save_best``.
      best_mode: ``'min'`` (lower is better, e.g. MAE) or ``'max'``.
      async_save: write periodic checkpoints in the background (then ``close()`` before exit).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        save_every: int,
        max_to_keep: int = 2,
        best_metric: str | None = "eval/mae",
        best_mode: Literal["min", "max"] = "min",
        async_save: bool = False,
    ):
        if not isinstance(save_every, int) or save_every < 1:
            raise ValueError(f"save_every must be an int >= 1, got {save_every!r}")
        if not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError(f"max_to_keep must be an int >= 1, got {max_to_keep!r}")
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
        self.directory = pathlib.Path(directory).absolute()
        self.save_every = save_every
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.async_save = async_save
        self._manager = _manager(self.directory, max_to_keep)
        self._best_manager = None
        self.best_value: float | None = None
        self.best_step: int | None = None
        if best_metric is not None and checkpoint_steps(self.best_dir):
            self._load_best_record()

    # -- periodic checkpoints ------------------------------------------------------------------
    def maybe_save(
        self, step: int, state: Any, meta: Mapping[str, Any], force: bool = False
    ) -> bool:
        """Save ``state`` and ``meta`` at ``step`` if ``step % save_every == 0`` or ``force``.

        Returns whether a save was started. A step that is already saved (e.g. the step just
        restored) is skipped and returns False. ``meta`` must be JSON-like (numpy/JAX scalars
        are converted); ``"step"`` is added to it. Returns once the checkpoint is on disk unless
        ``async_save`` (a forced save always waits: use it for the last step).
        """
        step = int(step)
        if self._manager is None:
            raise ValueError(f"Checkpointer for {self.directory} is closed")
        if not force and step % self.save_every != 0:
            return False
        if step in self._manager.all_steps():
            return False
        saved = self._manager.save(step, args=_save_args(state, {**meta, "step": step}), force=True)
        if force or not self.async_save:
            self._manager.wait_until_finished()
        return bool(saved)

    def latest_step(self) -> int | None:
        """The newest finished periodic checkpoint step (waits for a pending save), or None."""
        self._manager.wait_until_finished()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """All finished periodic checkpoint steps, ascending (waits for a pending save)."""
        self._manager.wait_until_finished()
        return sorted(self._manager.all_steps())

    def restore(self, step: int | None, abstract_state: Any) -> tuple[Any, dict]:
        """``(state, meta)`` of periodic checkpoint ``step`` (``None``: the latest).

        ``abstract_state``: the target pytree, ``ShapeDtypeStruct``s with ``.sharding`` set or
        concrete arrays; the restored arrays have exactly those shardings.
        """
        self._manager.wait_until_finished()
        if step is None:
            step = self._manager.latest_step()
            if step is None:
                raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return _restore(self._manager, int(step), abstract_state)

    # -- best checkpoint -----------------------------------------------------------------------
    @property
    def best_dir(self) -> pathlib.Path:
        return self.directory / BEST_DIR

    def is_improvement(self, metric_value: float) -> bool:
        """Whether ``metric_value`` beats the best so far (non-finite values never do)."""
        value = float(metric_value)
        if not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        return value < self.best_value if self.best_mode == "min" else value > self.best_value

    def save_best(self, step: int, state: Any, meta: Mapping[str, Any], metric_value) -> bool:
        """Keep ``state`` as the one best checkpoint if ``metric_value`` improves on the best.

        The new best is written completely before the previous one is deleted. Its meta holds
        ``best_metric = {"name", "value", "mode"}``, read back when a run restarts. Returns
        whether it was saved.
        """
        if self.best_metric is None:
            raise ValueError("save_best needs a Checkpointer built with best_metric set")
        if not self.is_improvement(metric_value):
            return False
        step, value = int(step), float(metric_value)
        manager = self._best()
        if step in manager.all_steps():  # the same step evaluated again: replace it in place
            manager.delete(step)
        record = {"name": self.best_metric, "value": value, "mode": self.best_mode}
        full_meta = {**meta, "step": step, BEST_KEY: record}
        manager.save(step, args=_save_args(state, full_meta), force=True)
        manager.wait_until_finished()
        for old in manager.all_steps():
            if old != step:
                manager.delete(old)
        self.best_value, self.best_step = value, step
        return True

    def restore_best(self, abstract_state: Any) -> tuple[Any, dict]:
        """``(state, meta)`` of the best checkpoint; ``FileNotFoundError`` if there is none."""
        if self.best_step is None:
            raise FileNotFoundError(f"no best checkpoint in {self.best_dir}")
        return _restore(self._best(), self.best_step, abstract_state)

    def _best(self):
        if self._best_manager is None:
            self._best_manager = _manager(self.best_dir, max_to_keep=None)
        return self._best_manager

    def _load_best_record(self) -> None:
        """Read the best value back (if a crash left two best steps, the better one counts)."""
        manager = self._best()
        for step in sorted(manager.all_steps()):
            meta = manager.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))
            record = (meta[META] or {}).get(BEST_KEY) or {}
            if (record.get("name"), record.get("mode")) != (self.best_metric, self.best_mode):
                raise ValueError(
                    f"best checkpoint {self.best_dir}/{step} records {record!r}, but this run "
                    f"compares best_metric={self.best_metric!r} with best_mode={self.best_mode!r}"
                )
            if self.is_improvement(record["value"]):
                self.best_value, self.best_step = float(record["value"]), step

    # -- lifetime ------------------------------------------------------------------------------
    def wait_until_finished(self) -> None:
        """Block until pending saves are on disk."""
        self._wait()

    def _wait(self) -> None:
        if self._manager is not None:
            self._manager.wait_until_finished()
        if self._best_manager is not None:
            self._best_manager.wait_until_finished()

    def close(self) -> None:
        """Wait for pending saves and release Orbax's resources. Safe to call twice."""
        if self._manager is None:
            return
        self._wait()
        self._manager.close()
        if self._best_manager is not None:
            self._best_manager.close()
        self._manager = self._best_manager = None

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Where a run starts from.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StartFrom:
    """Where training starts: ``kind`` and the ``path`` (and checkpoint ``step``) to load.

    kind: ``'workdir'`` | ``'resume_from'`` (an Orbax checkpoint directory; ``step`` set),
    ``'hf'`` (a Hugging Face folder; ``step`` None) or ``'scratch'`` (``path`` None).
    """

    kind: Literal["workdir", "resume_from", "hf", "scratch"]
    path: pathlib.Path | None = None
    step: int | None = None


def resolve_start(
    workdir_ckpt_dir: str | os.PathLike,
    resume_from: str | os.PathLike | None,
    hf_dir: str | os.PathLike | None,
) -> StartFrom:
    """Decide once where a run starts. The rule, first match wins:

    1. a checkpoint in this run's own checkpoint directory (``workdir_ckpt_dir``): the run was
       interrupted and continues, whatever the other options say;
    2. ``resume_from``: the checkpoint directory of a previous run (its latest step), or one of
       its step folders (``<dir>/<step>``); an error naming the path if it holds no checkpoint;
    3. ``hf_dir``: Hugging Face weights (an error naming the path if the folder is missing);
    4. scratch (random initialisation).

    Empty strings and ``None`` mean "not given". Only periodic checkpoints count, not ``best/``.
    """
    own_steps = checkpoint_steps(workdir_ckpt_dir)
    if own_steps:
        return StartFrom("workdir", pathlib.Path(workdir_ckpt_dir), own_steps[-1])
    if resume_from:
        path = pathlib.Path(resume_from)
        steps = checkpoint_steps(path)
        if steps:
            return StartFrom("resume_from", path, steps[-1])
        if path.name.isdigit() and int(path.name) in checkpoint_steps(path.parent):
            return StartFrom("resume_from", path.parent, int(path.name))
        raise FileNotFoundError(
            f"resume_from={str(path)!r} holds no Orbax checkpoint (expected finished step "
            "folders such as <dir>/1000, or a path to one of them)"
        )
    if hf_dir:
        path = pathlib.Path(hf_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"hf_dir={str(path)!r} is not a directory")
        return StartFrom("hf", path)
    return StartFrom("scratch")
