"""The test run's XLA flags: cheap compilation on CPU only, an opt-out, and the flags given
to the Python processes tests start (this process's own are set by tests/conftest.py)."""

from __future__ import annotations

import os

import jax

from tests import xla_flags


def test_this_run_compiles_cheaply_unless_opted_out():
    wanted = os.environ.get("RECZERO_TEST_FAST_COMPILE", "1") != "0"
    on_cpu = jax.default_backend() == "cpu"
    assert (xla_flags.FAST_COMPILE in os.environ["XLA_FLAGS"]) == (wanted and on_cpu)
    assert "--xla_force_host_platform_device_count=8" in os.environ["XLA_FLAGS"]


def test_child_flags(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("RECZERO_TEST_FAST_COMPILE", "1")
    assert xla_flags.child_xla_flags() == xla_flags.FAST_COMPILE  # one device: none faked
    assert xla_flags.child_xla_flags(devices=2).split() == [
        *xla_flags.FAST_COMPILE.split(),
        "--xla_force_host_platform_device_count=2",
    ]
    monkeypatch.setenv("RECZERO_TEST_FAST_COMPILE", "0")
    assert xla_flags.child_xla_flags() == ""
    monkeypatch.setenv("RECZERO_TEST_FAST_COMPILE", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    assert xla_flags.child_xla_flags(devices=8) == "--xla_force_host_platform_device_count=8"
