"""Test-wide setup: a fake 8-device CPU platform and shared fixtures.

XLA_FLAGS must be set before JAX initialises its backend, so this happens at import
time of the conftest, before any test module imports jax. Tests build 1-device meshes
from ``jax.devices()[:1]`` and 8-device meshes from all devices, in the same process.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from tests.xla_flags import base_flags  # noqa: E402  (imports no jax)

# Cheap compilation on CPU (see tests/xla_flags.py), then the caller's own flags, which win.
os.environ["XLA_FLAGS"] = " ".join(
    f
    for f in (
        base_flags(),
        os.environ.get("XLA_FLAGS", ""),
        "--xla_force_host_platform_device_count=8",
    )
    if f
)
# One persistent compilation cache for the whole run (this process and the subprocesses the
# tests start inherit it): a program that several tests build (the same tiny model's train
# step, sampler, ...) compiles once. Fresh and empty each run, removed at exit; results do
# not depend on it (a hit loads the executable the miss compiled). RECZERO_TEST_CACHE=0
# turns it off.
if (
    os.environ.get("RECZERO_TEST_CACHE", "1") != "0"
    and "JAX_COMPILATION_CACHE_DIR" not in os.environ
):
    import atexit
    import shutil
    import tempfile

    _cache_dir = tempfile.mkdtemp(prefix="reczero-test-xla-cache-")
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pathlib  # noqa: E402

import pytest  # noqa: E402

SHARED_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    """The ../shared folder beside the checkout; tests that need it skip when absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip("../shared is absent")
    return SHARED_DIR


@pytest.fixture(scope="session")
def qwen_tokenizer_dir(shared_dir) -> pathlib.Path:
    path = shared_dir / "tokenizers" / "qwen2.5"
    if not (path / "vocab.json").is_file():
        pytest.skip("../shared/tokenizers/qwen2.5 is absent")
    return path
