"""Config dataclasses: defaults, validation, and agreement with configs/baselines.py."""

import dataclasses
import importlib.util
import pathlib

import pytest

from reczero_jax.data.data_config import (
    BaselinesConfig,
    DataConfig,
    PromptConfig,
    SyntheticConfig,
)

CONFIG_FILE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "baselines.py"


def _load_config(arg=None):
    spec = importlib.util.spec_from_file_location("baselines_config", CONFIG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _to_dataclass(cls, d):
    """A minimal stand-in for the project's converter (rejects unknown keys)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    assert not unknown, f"unknown keys {unknown} for {cls.__name__}"
    kwargs = {}
    for k, v in d.items():
        ftype = (
            fields[k].default_factory
            if fields[k].default_factory is not dataclasses.MISSING
            else None
        )
        kwargs[k] = _to_dataclass(ftype, v) if isinstance(v, dict) else v
    return cls(**kwargs)


def test_defaults_are_valid():
    DataConfig(), BaselinesConfig(), PromptConfig(), SyntheticConfig()


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: DataConfig(source="netflix"), "data.source"),
        (lambda: DataConfig(source="amazon2014"), "data.path"),
        (lambda: DataConfig(split="random"), "data.split"),
        (lambda: DataConfig(history_len=0), "data.history_len"),
        (lambda: DataConfig(valid_fraction=0.6, test_fraction=0.5), "data.valid_fraction"),
        (lambda: SyntheticConfig(noise=0.0), "synthetic.noise"),
        (lambda: SyntheticConfig(interactions_per_user=999), "synthetic.interactions_per_user"),
        (lambda: PromptConfig(mode="xml"), "prompt.mode"),
        (lambda: PromptConfig(raw_template="{instruction} only"), "prompt.raw_template"),
        (lambda: BaselinesConfig(mf_dim=0), "baselines.mf_dim"),
        (lambda: BaselinesConfig(mf_lr=0.0), "baselines.mf_lr"),
    ],
)
def test_bad_values_name_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


@pytest.mark.parametrize("arg", [None, "small", "synthetic,small"])
def test_config_file_matches_dataclasses(arg):
    config = _load_config(arg)
    assert config.mode == "baselines"
    data = _to_dataclass(DataConfig, config.data.to_dict())
    baselines = _to_dataclass(BaselinesConfig, config.baselines.to_dict())
    if arg is None:  # the file states the same defaults as the dataclasses
        assert data == DataConfig()
        assert baselines == BaselinesConfig()
    doc = CONFIG_FILE.read_text().split('"""')[1]
    assert doc.startswith("python -m reczero_jax.main --config configs/baselines.py")
