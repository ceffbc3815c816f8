"""What the SFT and GRPO phase loops share: starting or restoring the train state, the
logging window, the checkpoint metadata.

A phase's state is ``{'params', 'opt_state', 'step'}`` plus, in the checkpoint's meta,
``data_position``: the number of the phase's loop steps done. All randomness of step k is
a pure function of (seed, k), so a phase restored at step k continues exactly as an
uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
from jax.sharding import Mesh

from reczero_jax.checkpointing import Checkpointer
from reczero_jax.observe import MetricWriter, Progress
from reczero_jax.observe.logs import log
from reczero_jax.rl.preemption import Preempted, PreemptionWatch
from reczero_jax.rl.step import TrainState, abstract_train_state, init_train_state


@dataclasses.dataclass(frozen=True)
class PhaseRuntime:
    """What every training phase loop is given besides its data and settings section.

    Attributes:
      mesh: the device mesh; ckpt: the phase's checkpointer; resume_step: the phase's own
      checkpoint step to continue from (None: start); writer: the metric writer; seed: the
      root of the phase's randomness; meta: the run's fixed checkpoint metadata; watch:
      stops the phase at a step boundary on preemption (None: never).
    """

    mesh: Mesh
    ckpt: Checkpointer
    resume_step: int | None
    writer: MetricWriter
    seed: int
    meta: dict
    watch: PreemptionWatch | None = None


@dataclasses.dataclass
class PhaseResult:
    """params: the final weights; history: the logged windows (and evaluations);
    compiles: the loop's compilation counts (:meth:`CompileLog.summary`)."""

    params: object
    history: list[dict]
    compiles: dict = dataclasses.field(default_factory=dict)


def start_state(params, tx, ckpt: Checkpointer, resume_step: int | None, name: str):
    """(state, first loop step): fresh optimizer state on ``params`` at step 0, or the
    phase's checkpoint at ``resume_step`` read straight into the layout of ``params``
    (which may then be abstract, ShapeDtypeStructs with shardings: nothing else is read)."""
    if resume_step is None:
        return init_train_state(params, tx), 0
    target = abstract_train_state(params, tx)
    saved, meta = ckpt.restore(resume_step, target.as_dict())
    log.info("%s: resumed from step %d (%s)", name, resume_step, ckpt.directory)
    state = TrainState(saved["params"], saved["opt_state"], saved["step"], tx)
    return state, int(meta.get("data_position", resume_step))


def stop_if_preempted(
    watch: PreemptionWatch | None, ckpt: Checkpointer, step: int, last: int, state, meta, phase
) -> None:
    """At a step boundary before the phase's last step: if the run must stop, save this
    step (unless it is saved already), wait until it is on disk, raise Preempted."""
    if watch is None or step >= last or not watch.stop_at(step):
        return
    ckpt.save(step, state.as_dict(), checkpoint_meta(meta, phase, step), force=True)
    ckpt.close()  # waits for every pending save
    raise Preempted(phase, step)


def checkpoint_meta(base: dict, phase: str, step: int) -> dict:
    """The run's fixed metadata (config, seed) plus the phase and its data position."""
    return {**base, "phase": phase, "data_position": step}


def host_metrics(metrics) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def mean_metrics(items: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([m[k] for m in items])) for k in items[0]} if items else {}


def window_metrics(items: list[dict[str, float]]) -> dict[str, float]:
    """A log window's metrics: means, except counts (``compile/*``), which are summed."""
    out = mean_metrics(items)
    for k in out:
        if k.startswith("compile/"):
            out[k] = float(sum(m[k] for m in items))
    return out


class StepLog:
    """Every ``every`` steps (and at the last): the window's metrics (means; counts summed,
    :func:`window_metrics`) go to the writer as ``<prefix>/<name>``, to the history, to
    the progress bar, and (without a bar) every 5 windows to one printed line
    ``line(step, mean)``."""

    def __init__(
        self, writer: MetricWriter, prefix: str, total: int, start: int, every: int, line, shown
    ):
        self.writer, self.prefix, self.total, self.every = writer, prefix, total, every
        self.line, self.shown = line, shown
        self.history: list[dict] = []
        self._window: list[dict[str, float]] = []
        self._tick = time.perf_counter()
        self._progress = Progress(total, desc=prefix, initial=start)

    def add(self, done: int, metrics: dict[str, float]) -> None:
        """Record the metrics of the step that brought the phase to ``done`` steps."""
        self._window.append(metrics)
        if done % self.every and done != self.total:
            return
        mean = window_metrics(self._window)
        mean.setdefault("perf/step_s", (time.perf_counter() - self._tick) / len(self._window))
        self._tick, self._window = time.perf_counter(), []
        self.writer.write(done, {f"{self.prefix}/{k}": v for k, v in mean.items()})
        self.history.append({"step": done, **mean})
        self._progress.update(done, **{k: mean[k] for k in self.shown})
        if not self._progress.enabled and (done % (self.every * 5) == 0 or done == self.total):
            log.info("%s %d/%d: %s", self.prefix, done, self.total, self.line(mean))
        if mean.get("update/skipped", 0) > 0:
            log.warning(
                "%s step %d: non-finite loss or gradient, update skipped", self.prefix, done
            )

    def close(self) -> None:
        self._progress.close()
