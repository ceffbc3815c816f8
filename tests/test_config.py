"""Config validation: every bad input fails at start-up with a message naming the key."""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib

import ml_collections
import pytest

from reczero_jax.config_parsing import ConfigError, from_mapping
from reczero_jax.settings import Settings, default_config, load_settings

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config_module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.py")), ids=lambda p: p.stem)
def test_every_config_file_validates(path):
    module = _config_module(path.stem)
    settings = load_settings(module.get_config())
    assert isinstance(settings, Settings)
    assert module.__doc__.lstrip().startswith("python -m reczero_jax.main") or (
        "python -m reczero_jax.main" in module.__doc__
    )


def test_defaults_round_trip():
    assert load_settings(default_config()) == Settings()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.model.update({"dtyp": "float32"}), r"config\.model\.dtyp: unknown key"),
        (lambda c: c.update({"modle": {}}), r"config\.modle: unknown key"),
        (lambda c: setattr(c.sampling, "top_p", 1.5), r"config\.sampling\.top_p: must be in"),
        (lambda c: setattr(c, "mode", "train"), r"config\.mode: must be one of"),
        (lambda c: setattr(c.model, "dtype", "float16"), r"config\.model\.dtype"),
        (lambda c: setattr(c.sampling, "prompt_buckets", (128, 64)), r"prompt_buckets"),
        (lambda c: setattr(c.mesh, "shape", (-1, -1, 1)), r"config\.mesh\.shape"),
        (lambda c: setattr(c.data.synthetic, "noise", -1.0), r"config\.data\.synthetic"),
    ],
)
def test_bad_values_name_the_key(mutate, message):
    config = default_config()
    mutate(config)
    with pytest.raises(ConfigError, match=message):
        load_settings(config)


def test_wrong_types_name_the_key():
    config = default_config().to_dict()
    config["sampling"]["num_samples"] = "four"
    with pytest.raises(ConfigError, match=r"config\.sampling\.num_samples: expected int"):
        load_settings(config)
    config = default_config().to_dict()
    config["mesh"]["shape"] = (1, 2)
    with pytest.raises(ConfigError, match=r"config\.mesh\.shape: expected 3 values"):
        load_settings(config)
    config = default_config().to_dict()
    config["chat"] = 1
    with pytest.raises(ConfigError, match=r"config\.chat: expected bool"):
        load_settings(config)


def test_impossible_combination_is_caught():
    config = default_config()
    config.mode = "baselines"
    config.workdir = ""
    with pytest.raises(ConfigError, match=r"config\.workdir"):
        load_settings(config)


def test_converter_accepts_ints_for_floats_and_lists_for_tuples():
    @dataclasses.dataclass(frozen=True)
    class Section:
        x: float = 1.0
        xs: tuple[int, ...] = ()

    out = from_mapping(Section, ml_collections.ConfigDict({"x": 2, "xs": [1, 2]}))
    assert out == Section(2.0, (1, 2))
