"""Stopping cleanly when the machine is taken away.

A spot TPU VM gets about 30 seconds of notice: SIGTERM to the process, and on TPU pods
JAX's preemption service tells every host at a step all of them reach
(``multihost_utils.reached_preemption_sync_point``). :class:`PreemptionWatch` listens for
both; the phase loops ask :meth:`PreemptionWatch.stop_at` after every step, all processes
agree on the answer (an any-reduction of each process's flag), and the loop then saves a
checkpoint of that step, waits until it is on disk and raises :class:`Preempted`. The
entry point turns it into a message and exit status 0; relaunching the same command
resumes from that checkpoint and ends bitwise equal to an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import signal
import threading

import jax
import numpy as np


class Preempted(Exception):  # noqa: N818 - an outcome, not an error
    """The run stopped at ``step`` of ``phase`` after checkpointing it."""

    def __init__(self, phase: str, step: int):
        super().__init__(f"{phase} preempted at step {step}: checkpoint saved")
        self.phase, self.step = phase, step


class PreemptionWatch:
    """Sets a flag on SIGTERM (while active) and reports, at step boundaries, whether the
    run must stop. Use as a context manager around the phases; the previous SIGTERM
    handler is restored on exit. Outside the main thread no handler is installed."""

    def __init__(self):
        self._requested = False
        self._previous = None

    def request(self, *_) -> None:
        """Ask the run to stop at the next step boundary (the SIGTERM handler)."""
        self._requested = True

    def __enter__(self) -> PreemptionWatch:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self.request)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def stop_at(self, step: int) -> bool:
        """Whether every process stops after ``step``: any process got SIGTERM, or JAX's
        preemption service reached its sync point (multi-host TPU jobs)."""
        stop = self._requested
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            with contextlib.suppress(RuntimeError):  # no preemption service (CPU processes)
                stop = stop or multihost_utils.reached_preemption_sync_point(step)
            flags = multihost_utils.process_allgather(np.asarray(stop, np.int32))
            stop = bool(np.any(flags))
        return stop
