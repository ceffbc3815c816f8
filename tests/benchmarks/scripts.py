"""The benchmark scripts under ``benchmarks/``, imported by file for their tests."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import types

BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str) -> types.ModuleType:
    """``benchmarks/<name>.py`` as module ``bench_<name>`` (registered in ``sys.modules``,
    where dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
