"""Run messages: absl.logging's format (level, date, time, source line), on the terminal and in
``workdir/log.txt``.

Every message of the project goes through :data:`log` (a logger of its own, so that JAX's
and Orbax's INFO chatter stays out while ours shows)::

    from reczero_jax.observe.logs import log
    log.info("grpo: weights from %s", source)

Its records are formatted by ``absl.logging.PythonFormatter``
(``I1130 09:40:00.123456 140213 run.py:123] grpo: weights from ...``) and written to stderr
above any progress bar on screen (``tqdm.write``, so the bar is redrawn whole).
:func:`log_to_workdir` adds ``workdir/log.txt`` for the span of a run (appending: a resumed
run continues the file). On a remote workdir (``gs://``) the lines go to a local file that
is copied there when the run ends. Only process 0 writes: the others log warnings only.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Iterator

from absl import logging as absl_logging

log = logging.getLogger("reczero_jax")
_FORMATTER = absl_logging.PythonFormatter()


class _TerminalHandler(logging.Handler):
    """stderr, written above a live tqdm bar when there is one."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            from tqdm import tqdm

            if getattr(tqdm, "_instances", None):
                tqdm.write(line, file=sys.stderr)
            else:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never end a run
            self.handleError(record)


def _configure() -> None:
    if getattr(log, "_reczero_configured", False):
        return
    terminal = _TerminalHandler()
    terminal.setFormatter(_FORMATTER)
    log.addHandler(terminal)
    log.setLevel(logging.INFO)
    log.propagate = False
    log._reczero_configured = True  # type: ignore[attr-defined]


_configure()


def quiet_unless_primary(process_index: int) -> None:
    """Processes other than 0 log warnings and errors only."""
    if process_index != 0:
        log.setLevel(logging.WARNING)


@contextlib.contextmanager
def log_to_workdir(workdir) -> Iterator[None]:
    """Also writes every message to ``workdir/log.txt`` until the block ends.

    ``workdir``: a local path or an ``epath.Path`` (``gs://``: written locally, copied there
    at the end, whatever way the block ends).
    """
    from reczero_jax.paths import as_path, is_remote

    target = as_path(workdir) / "log.txt"
    remote = is_remote(str(target))
    if remote:
        local_dir = tempfile.mkdtemp(prefix="reczero_log_")
        local = pathlib.Path(local_dir) / "log.txt"
        if target.exists():
            local.write_text(target.read_text())
    else:
        local = pathlib.Path(str(target))
        local.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(local, mode="a", encoding="utf-8")
    handler.setFormatter(_FORMATTER)
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
        if remote:
            target.write_text(local.read_text())
            shutil.rmtree(local.parent, ignore_errors=True)
