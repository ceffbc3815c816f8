"""Counting XLA compilations, so that a training loop can show it compiles each jitted
function once per shape bucket and never again.

Every backend compilation JAX runs (a jitted function on a new shape or sharding, an
ahead-of-time ``.compile()``, an eager op on a new shape) fires the ``jax.monitoring``
event :data:`BACKEND_COMPILE_EVENT`; one listener, registered once per process, counts
them (:func:`compilations`). :class:`CompileLog` attributes the count to a loop's steps:

* ``compile/count``: compilations during the step (its metric, summed over a log window);
* ``after_first_step``: compilations during the phase's steps after its first one. With a
  single prompt bucket this is 0 unless something recompiles; a prompt bucket first met
  later costs one compilation per function that sees it;
* ``recompiles``: compilations during a step whose shape signature (the prompt buckets it
  used) an earlier step had already used: each of them compiled a function a second time
  for shapes it had seen, which a well-formed loop never does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator

import jax

from reczero_jax.observe.logs import log

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

_lock = threading.Lock()
_count = 0
_registered = False


def _listener(event: str, duration: float, **kwargs) -> None:
    global _count
    if event == BACKEND_COMPILE_EVENT:
        with _lock:
            _count += 1


def compilations() -> int:
    """XLA backend compilations in this process since the first call of this function."""
    global _registered
    with _lock:
        if not _registered:
            jax.monitoring.register_event_duration_secs_listener(_listener)
            _registered = True
        return _count


class CompileLog:
    """Compilations of one phase's loop steps, by step shape signature.

    ``with log.step(signature, step) as counted: ...`` counts the compilations inside the
    block and fills ``counted['compile/count']`` when it ends. ``signature`` is hashable,
    or a set that the block fills (read when it ends: e.g. the prompt buckets its rollouts
    used). The first step run in this process is the phase's first (a resumed phase
    compiles again).
    """

    def __init__(self, name: str):
        self.name = name
        self.first_step = 0
        self.after_first_step = 0
        self.recompiles = 0
        self._seen: set[Hashable] = set()
        self._steps = 0
        compilations()  # registers the listener before anything is compiled

    @contextlib.contextmanager
    def step(self, signature: Hashable, step: int) -> Iterator[dict[str, float]]:
        counted: dict[str, float] = {}
        before = compilations()
        yield counted
        n = compilations() - before
        counted["compile/count"] = float(n)
        if isinstance(signature, set | frozenset):
            signature = tuple(sorted(signature))
        if self._steps == 0:
            self.first_step += n
        else:
            self.after_first_step += n
            if signature in self._seen and n:
                self.recompiles += n
                log.warning(
                    "%s step %d: %d XLA compilation(s) for shapes an earlier step already "
                    "compiled (%s): something recompiles", self.name, step, n, signature
                )  # fmt: skip
        self._seen.add(signature)
        self._steps += 1

    def summary(self) -> dict[str, int]:
        """{'first_step', 'after_first_step', 'recompiles', 'signatures'} of the phase."""
        return {
            "first_step": self.first_step,
            "after_first_step": self.after_first_step,
            "recompiles": self.recompiles,
            "signatures": len(self._seen),
        }
