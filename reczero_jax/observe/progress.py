"""Console progress (a tqdm bar on stderr) and a per-phase wall-clock timer.

``Progress`` draws only on process 0 and only when stderr is a terminal. Otherwise, with
``every`` > 0, it logs one plain line every ``every`` steps and at the last (logs in files
stay free of carriage-return noise); with ``every`` = 0 it is silent (the caller logs).

``PhaseTimer`` accumulates wall-clock seconds per named phase of a step::

    timer = PhaseTimer()
    with timer.phase("rollout"):
        rollouts = jax.block_until_ready(sample(...))   # block, or the time lands elsewhere
    with timer.phase("update"):
        state, stats = jax.block_until_ready(train_step(state, rollouts))
    writer.write(step, {**stats, **timer.pop()})  # + {'time/rollout_s': .., 'time/update_s': ..}

JAX dispatches asynchronously: a phase measures only the host time spent inside it unless the
code blocks on its results before leaving the ``with`` block.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator


def _is_process_zero() -> bool:
    import jax  # lazily: importing this module never initialises JAX

    return jax.process_index() == 0


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """A step progress bar: ``Progress(total_steps, desc)``, ``update(step, **shown)``, ``close()``.

    Args:
      total_steps: the step the run ends at.
      desc: a short label shown before the bar.
      initial: the step the run starts (or resumes) from.
      enabled: ``None`` means "process 0 and stderr is a TTY"; pass a bool to force.
      every: without a bar, log a plain line every ``every`` steps (0: never).
      unit: what a step is called ("step", "batch", "trace", "epoch").
    """

    def __init__(
        self,
        total_steps: int,
        desc: str = "train",
        initial: int = 0,
        enabled: bool | None = None,
        every: int = 0,
        unit: str = "step",
    ):
        if enabled is None:
            enabled = sys.stderr.isatty() and _is_process_zero()
        self.enabled = bool(enabled)
        self.total, self.desc, self.every, self.unit = int(total_steps), desc, int(every), unit
        self._start = time.perf_counter()
        self._initial = int(initial)
        self._bar = None
        if self.enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=int(total_steps),
                initial=int(initial),
                desc=desc,
                file=sys.stderr,
                dynamic_ncols=True,
                unit=unit,
            )

    def update(self, step: int, **shown_metrics) -> None:
        """Move the bar to ``step`` (absolute, not an increment) and show ``shown_metrics``."""
        if self._bar is None:
            step = int(step)
            if self.every and (step % self.every == 0 or step == self.total):
                self._log_line(step, shown_metrics)
            return
        if shown_metrics:
            self._bar.set_postfix({k: _format(v) for k, v in shown_metrics.items()}, refresh=False)
        self._bar.update(int(step) - self._bar.n)

    def _log_line(self, step: int, shown: dict) -> None:
        from reczero_jax.observe.logs import log

        rate = (step - self._initial) / max(time.perf_counter() - self._start, 1e-9)
        figures = "".join(f" {k}={_format(v)}" for k, v in shown.items())
        log.info(
            "%s %d/%d%s (%.3g %s/s)", self.desc, step, self.total, figures, rate, self.unit
        )  # fmt: skip

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PhaseTimer:
    """Accumulates seconds per phase until ``pop()`` returns and resets them.

    Phases may nest or repeat; each ``with timer.phase(name)`` adds its own wall time to
    ``name``. ``pop()`` returns ``{'time/<name>_s': seconds}`` in first-use order.
    """

    def __init__(self, prefix: str = "time/"):
        self.prefix = prefix
        self._seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self._seconds[name] = self._seconds.get(name, 0.0) + elapsed

    def pop(self) -> dict[str, float]:
        """The accumulated ``{'time/<phase>_s': seconds}`` since the last ``pop``; then reset."""
        out = {f"{self.prefix}{name}_s": s for name, s in self._seconds.items()}
        self._seconds = {}
        return out
