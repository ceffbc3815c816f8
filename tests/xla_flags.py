"""The XLA flags of a test run, for this process (tests/conftest.py) and for the Python
processes the tests start.

The suite's programs are tiny and many, so compiling them is most of its time. On CPU the
run compiles cheaply: XLA's classic LLVM kernel emitters instead of its MLIR fusion
emitters (``--xla_cpu_use_fusion_emitters=false``) and LLVM at -O0
(``--xla_backend_optimization_level=0``). Every HLO pass (fusion, layout, buffer
assignment) still runs; only how each fused kernel becomes machine code changes. One train
step of tests/rl/test_step.py compiles in 3.5 s as a user's run does, 2.0 s at -O0 and
0.65 s with both; the suite in two workers took 9 min 17 s, 7 min 14 s (-O0) and 5 min 10 s
(both) on a 2-core Xeon with AVX-512. The tests pass either way;
``RECZERO_TEST_FAST_COMPILE=0`` compiles as a user's run does.
"""

from __future__ import annotations

import os

FAST_COMPILE = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0"


def base_flags() -> str:
    """The flags every process of the run starts with (empty off CPU or when opted out)."""
    on_cpu = os.environ.get("JAX_PLATFORMS", "cpu") == "cpu"
    wanted = os.environ.get("RECZERO_TEST_FAST_COMPILE", "1") != "0"
    return FAST_COMPILE if on_cpu and wanted else ""


def child_xla_flags(devices: int = 1) -> str:
    """XLA_FLAGS for a Python process a test starts: ``devices`` CPU devices (1: none faked,
    as a user has)."""
    fake = f"--xla_force_host_platform_device_count={devices}" if devices > 1 else ""
    return " ".join(f for f in (base_flags(), fake) if f)
