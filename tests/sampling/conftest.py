"""Fixtures of the sampler tests: a tiny random Qwen2 checkpoint and its loaded params."""

from __future__ import annotations

import jax
import pytest

from reczero_jax import sharding
from reczero_jax.hf.checkpoint import load_hf_params
from reczero_jax.model import ModelConfig
from reczero_jax.model.params import param_shardings
from tests.fixtures.hf_models import make_tiny_hf_model


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory):
    return make_tiny_hf_model("qwen2", tmp_path_factory.mktemp("sampler") / "qwen2")


@pytest.fixture(scope="session")
def qwen2(qwen2_dir):
    """(config, params on one device, checkpoint dir)."""
    config = ModelConfig.from_hf_dir(qwen2_dir)
    return config, load_hf_params(qwen2_dir, config), qwen2_dir


def mesh_of(shape):
    n = shape[0] * shape[1] * shape[2]
    return sharding.make_mesh(shape, jax.devices()[:n])


def load_on(mesh, config, hf_dir, rules=sharding.SAMPLE_RULES):
    return load_hf_params(hf_dir, config, param_shardings(config, mesh, rules))
