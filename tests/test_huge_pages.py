"""reczero_jax.huge_pages: the decision to restart, the GLIBC_TUNABLES it writes, the
restart itself (once, same command line) and its effect (malloc'd memory on huge pages)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from reczero_jax import huge_pages
from reczero_jax.huge_pages import MARKER, OPT_OUT, decision, thp_mode, with_tunable

ROOT = pathlib.Path(__file__).resolve().parents[1]
ELIGIBLE = decision({}, thp_mode(), huge_pages.glibc_version()) is None


def test_the_tunable_joins_the_users_others_and_never_overrides_theirs():
    assert with_tunable("") == "glibc.malloc.hugetlb=1"
    assert with_tunable("glibc.malloc.arena_max=2") == (
        "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    )
    assert with_tunable(":glibc.malloc.arena_max=2:") == (
        "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    )
    assert with_tunable("glibc.malloc.hugetlb=0") == "glibc.malloc.hugetlb=0"  # theirs wins
    assert with_tunable("glibc.malloc.hugetlb=0:x=1") == "glibc.malloc.hugetlb=0:x=1"


def test_thp_mode_reads_the_bracketed_word(tmp_path):
    f = tmp_path / "enabled"
    cases = (("always [madvise] never\n", "madvise"), ("[always] madvise never", "always"),
             ("always madvise [never]", "never"), ("garbled", None))  # fmt: skip
    for text, mode in cases:
        f.write_text(text)
        assert thp_mode(str(f)) == mode
    assert thp_mode(str(tmp_path / "absent")) is None


@pytest.mark.parametrize(
    "environ, thp, glibc, restart",
    [
        ({}, "madvise", (2, 36), True),
        ({}, "madvise", (2, 35), True),
        ({}, "madvise", (2, 34), False),  # glibc without the tunable
        ({}, "madvise", None, False),  # not glibc (musl, macOS)
        ({}, "always", (2, 36), False),  # the kernel does it unasked
        ({}, "never", (2, 36), False),  # it cannot
        ({}, None, (2, 36), False),  # no THP at all
        ({OPT_OUT: "0"}, "madvise", (2, 36), False),  # the user's opt-out
        ({OPT_OUT: "1"}, "madvise", (2, 36), True),
        ({MARKER: "1"}, "madvise", (2, 36), False),  # already restarted: never twice
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "madvise", (2, 36), False),
        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "madvise", (2, 36), True),
    ],
)
def test_decision(environ, thp, glibc, restart):
    why = decision(environ, thp, glibc)
    assert (why is None) == restart
    assert why is None or why.startswith(("on", "off", "as set"))


def _start(tmp_path, env_extra: dict, *args: str) -> tuple[list[str], dict]:
    """Runs a script that calls reexec_with_huge_pages first; returns the lines it logged
    (one per start) and its final report."""
    starts = tmp_path / "starts.txt"
    script = tmp_path / "child.py"
    script.write_text(
        "import json, os, sys\n"
        f"open({str(starts)!r}, 'a').write('start\\n')\n"
        "from reczero_jax.huge_pages import reexec_with_huge_pages, status\n"
        "reexec_with_huge_pages()\n"
        "print(json.dumps({'argv': sys.argv[1:], 'tunables': os.environ.get('GLIBC_TUNABLES'),"
        " 'status': status()}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (MARKER, OPT_OUT, "GLIBC_TUNABLES")}
    env.update(env_extra, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-X", "utf8", str(script), *args], env=env,
                         capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return starts.read_text().splitlines(), json.loads(out.stdout.strip().splitlines()[-1])


def test_the_process_restarts_once_with_the_tunable_and_its_command_line(tmp_path):
    if not ELIGIBLE:
        pytest.skip(f"this host gets no restart: {huge_pages.status({})}")
    starts, report = _start(tmp_path, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}, "--a", "b c")
    assert len(starts) == 2  # the first start and exactly one restart
    assert report["argv"] == ["--a", "b c"]
    assert report["tunables"] == "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1"
    assert report["status"].startswith("on")


def test_the_opt_out_keeps_the_process_as_started(tmp_path):
    starts, report = _start(tmp_path, {OPT_OUT: "0"}, "--x")
    assert len(starts) == 1 and report["argv"] == ["--x"]
    assert report["tunables"] is None and report["status"] == f"off ({OPT_OUT}=0)"


def test_malloced_memory_lands_on_huge_pages_only_with_the_tunable(tmp_path):
    """The effect itself: 96 MB from glibc's malloc (served by mmap), touched, is backed by
    transparent huge pages after the restart, and (the control) not without it. (Not
    through numpy: it asks for huge pages on its own large arrays.)"""
    if not ELIGIBLE:
        pytest.skip(f"this host gets no restart: {huge_pages.status({})}")
    script = tmp_path / "touch.py"
    script.write_text(
        "import sys\n"
        "if sys.argv[1] == 'on':\n"
        "    from reczero_jax.huge_pages import reexec_with_huge_pages\n"
        "    reexec_with_huge_pages()\n"
        "import ctypes\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "p = libc.malloc(96 * 2**20)\n"
        "ctypes.memset(p, 1, 96 * 2**20)\n"
        "for line in open('/proc/self/smaps_rollup'):\n"
        "    if line.startswith('AnonHugePages:'):\n"
        "        print(int(line.split()[1]) // 1024)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (MARKER, OPT_OUT, "GLIBC_TUNABLES")}
    env["PYTHONPATH"] = str(ROOT)

    def huge_mb(mode: str) -> int:
        out = subprocess.run([sys.executable, str(script), mode], env=env, capture_output=True,
                             text=True, timeout=120, check=True)  # fmt: skip
        return int(out.stdout.split()[-1])

    assert huge_mb("on") >= 64
    assert huge_mb("off") < 16
