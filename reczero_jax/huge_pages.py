"""Transparent huge pages for glibc's malloc, set by starting the process again once.

XLA:CPU gives each call of a compiled function one temporary block that holds all its
intermediates (156 MB for the GRPO update at the peer benchmark's short shape), taken
with malloc and freed when the call ends. glibc serves a block that large with a fresh
``mmap`` and hands it back with ``munmap``, so every call faults in, and the kernel zeroes,
each 4 KiB page it touches: 41,500 minor page faults per update there, 516,000 at
RecZero's shape.

The glibc tunable ``glibc.malloc.hugetlb=1`` (glibc 2.35 and later) makes glibc mark the
memory it maps ``MADV_HUGEPAGE``. Where the kernel's transparent huge pages are in
``madvise`` mode (the default of Debian and Ubuntu), such memory is then faulted in
2 MiB at a time (127 faults per update), and the weights a decode step reads sit in far
fewer TLB entries. Under ``always`` the kernel does this without being asked, and under
``never`` it cannot; neither needs the tunable.

glibc reads its tunables only when a process starts, so :func:`reexec_with_huge_pages`
replaces the process by the same command line with the tunable added to
``GLIBC_TUNABLES``. ``python -m reczero_jax.main`` calls it before anything else; the
environment variable ``RECZERO_HUGE_PAGES=0`` turns it off. Nothing here changes a
number the run computes, only where its memory comes from.
"""

from __future__ import annotations

import os
import sys

TUNABLE = "glibc.malloc.hugetlb"
VALUE = "1"
OPT_OUT = "RECZERO_HUGE_PAGES"  # '0': leave the process as it was started
MARKER = "RECZERO_HUGE_PAGES_REEXEC"  # set in the restarted process: never restart twice
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
MIN_GLIBC = (2, 35)  # the first glibc with glibc.malloc.hugetlb


def thp_mode(path: str = THP_ENABLED) -> str | None:
    """The kernel's transparent-huge-page mode ('always', 'madvise' or 'never'): the
    bracketed word of ``path``; None when the file is absent (not Linux) or unreadable."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def glibc_version() -> tuple[int, int] | None:
    """(major, minor) of the C library when it is glibc, else None (musl, macOS)."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # 'glibc 2.36'
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (AttributeError, ValueError, OSError):  # no confstr, or not that name
        return None


def sets(tunables: str, tunable: str = TUNABLE) -> bool:
    """Whether ``GLIBC_TUNABLES`` (colon-separated ``name=value``) sets ``tunable``."""
    return any(p.split("=", 1)[0] == tunable for p in tunables.split(":"))


def with_tunable(tunables: str, tunable: str = TUNABLE, value: str = VALUE) -> str:
    """``GLIBC_TUNABLES`` with ``tunable=value`` added (empty entries dropped); an existing
    setting of the same tunable is left as the user chose it."""
    parts = [p for p in tunables.split(":") if p]
    return ":".join(parts if sets(tunables, tunable) else [*parts, f"{tunable}={value}"])


def decision(environ, thp: str | None, glibc: tuple[int, int] | None) -> str | None:
    """Why the process stays as it is, or None when it should restart with the tunable.

    Args:
      environ: the process environment (a mapping).
      thp: :func:`thp_mode`; glibc: :func:`glibc_version`.
    """
    if environ.get(OPT_OUT, "") == "0":
        return f"off ({OPT_OUT}=0)"
    if environ.get(MARKER):
        return f"on ({TUNABLE}={VALUE}, set at start-up)"
    tunables = environ.get("GLIBC_TUNABLES", "")
    if sets(tunables):
        return f"as set in GLIBC_TUNABLES ({tunables})"
    if glibc is None or glibc < MIN_GLIBC:
        return "off (needs glibc 2.35 or later)"
    if thp == "always":
        return "on (the kernel's transparent huge pages are 'always')"
    if thp != "madvise":
        return f"off (transparent huge pages: {thp or 'not available'})"
    return None


def status(environ=None) -> str:
    """One line for the log: whether this process runs with huge pages, and why."""
    environ = os.environ if environ is None else environ
    return decision(environ, thp_mode(), glibc_version()) or "off (not restarted yet)"


def reexec_with_huge_pages(environ=None) -> None:
    """Replace this process by the same command line under ``GLIBC_TUNABLES`` with
    ``glibc.malloc.hugetlb=1``, when :func:`decision` says so; otherwise return.

    Call it first thing, before imports that start threads or take memory: whatever ran
    before is run again. On success it does not return. When the interpreter's own path
    or command line is unknown, or ``exec`` fails, the process goes on as it is.
    """
    environ = os.environ if environ is None else environ
    if decision(environ, thp_mode(), glibc_version()) is not None:
        return
    argv = list(getattr(sys, "orig_argv", []))
    if not sys.executable or not argv:
        return
    environ = dict(environ)
    environ["GLIBC_TUNABLES"] = with_tunable(environ.get("GLIBC_TUNABLES", ""))
    environ[MARKER] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *argv[1:]], environ)
    except OSError:
        return
