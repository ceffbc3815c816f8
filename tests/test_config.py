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
def test_every_config_file_validates(path, tmp_path):
    module = _config_module(path.stem)
    config = module.get_config()
    if (
        "sft" in config and config.sft.traces == "file"
    ):  # a launch config whose traces file the user names
        config.sft.traces_path = str(tmp_path / "traces.jsonl")
        (tmp_path / "traces.jsonl").write_text("")
    settings = load_settings(config, num_devices=8)
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
        (
            lambda c: c.sampling.update({"unroll_layers": True}),
            r"config\.sampling\.unroll_layers: renamed: write sampling\.decode_loop='unrolled'",
        ),
        (lambda c: setattr(c.sampling, "decode_loop", "x"), r"config\.sampling\.decode_loop"),
        (lambda c: setattr(c.sampling, "top_p", 1.5), r"config\.sampling\.top_p: must be in"),
        (lambda c: setattr(c, "mode", "train"), r"config\.mode: must be one of"),
        (lambda c: setattr(c.model, "dtype", "float16"), r"config\.model\.dtype"),
        (lambda c: setattr(c.model, "attention", "flash"), r"config\.model\.attention: must be"),
        (
            lambda c: setattr(c.model, "attention", "cudnn"),
            r"config\.model\.attention: 'cudnn' needs model\.dtype='bfloat16'",
        ),
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
    config["grpo"]["num_generations"] = "four"
    with pytest.raises(ConfigError, match=r"config\.grpo\.num_generations: expected int"):
        load_settings(config)
    config = default_config().to_dict()
    config["mesh"]["shape"] = (1, 2)
    with pytest.raises(ConfigError, match=r"config\.mesh\.shape: expected 3 values"):
        load_settings(config)
    config = default_config().to_dict()
    config["generate"]["chat"] = 1
    with pytest.raises(ConfigError, match=r"config\.generate\.chat: expected bool"):
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


def _training(mode="recone", workdir="/tmp/unused", **sections):
    config = default_config()
    config.mode = mode
    config.workdir = workdir
    for section, values in sections.items():
        getattr(config, section).update(values)
    return config


@pytest.mark.parametrize(
    "config, message",
    [
        # G >= 2 for GRPO, always
        (_training(grpo={"num_generations": 1}), r"config\.grpo\.num_generations: must be >= 2"),
        (_training(grpo={"entropy_coef": -0.1}), r"config\.grpo\.entropy_coef: must be >= 0"),
        (_training(grpo={"kl_estimator": "k1"}), r"config\.grpo\.kl_estimator: must be one of"),
        (_training(grpo={"aggregation": "sum"}), r"config\.grpo\.aggregation: must be one of"),
        (_training(grpo={"advantage_std": "x"}), r"config\.grpo\.advantage_std: must be one of"),
        (_training(grpo={"reward_preset": "x"}), r"config\.grpo\.reward_preset: must be one of"),
        # the variants against group collapse
        (_training(grpo={"dynamic_max_rounds": 0}), r"config\.grpo\.dynamic_max_rounds: must be"),
        (_training(grpo={"overlong_penalty": -1.0}), r"config\.grpo\.overlong_penalty: must be"),
        (
            _training(grpo={"overlong_buffer": 64}, sampling={"max_new_tokens": 64}),
            r"config\.grpo\.overlong_buffer: 64 must be below sampling\.max_new_tokens=64",
        ),
        # a traces file that exists
        (
            _training(sft={"traces": "file", "traces_path": "/nope/traces.jsonl"}),
            r"config\.sft\.traces_path: '/nope/traces\.jsonl' is not a file",
        ),
        # the rewrite of wrong traces is the teacher's
        (
            _training(sft={"traces": "self", "rewrite_wrong": True}),
            r"config\.sft\.rewrite_wrong: applies to sft\.traces='teacher' only",
        ),
        # cuDNN's masked fused attention: even lengths
        (
            _training(
                model={"dtype": "bfloat16", "attention": "cudnn"}, sampling={"max_new_tokens": 63}
            ),
            r"config\.sampling\.max_new_tokens: model\.attention='cudnn' trains on even .*63",
        ),
        (
            _training(
                model={"dtype": "bfloat16", "attention": "cudnn"},
                sampling={"prompt_buckets": (64, 127)},
            ),
            r"config\.sampling\.prompt_buckets: .*\(64, 127\)",
        ),
        # a mode's required keys
        (_training(mode="eval"), r"config\.checkpoint\.resume_from: mode 'eval' evaluates"),
        (_training(mode="grpo", workdir=""), r"config\.workdir: mode 'grpo' writes"),
        (
            _training(mode="generate", generate={"prompt": ""}),
            r"config\.generate\.prompt: mode \"generate\" needs a prompt",
        ),
        (_training(mode="prepare"), r"config\.data\.tfds_data_dir: mode 'prepare' writes"),
    ],
)
def test_rules_across_sections_name_the_key(config, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(config, num_devices=1)


def test_prepare_needs_a_tfds_data_dir_and_no_workdir_nor_devices():
    config = _training(mode="prepare", workdir="", data={"tfds_data_dir": "gs://b/tfds"})
    config.mesh.shape = (1, 1, 8)  # no mesh is built: the device rules do not apply
    settings = load_settings(config, num_devices=1)
    assert settings.phases == () and settings.data.tfds_data_dir == "gs://b/tfds"


def test_the_teacher_rule_holds_only_in_modes_with_a_cold_start():
    real = {"source": "amazon2014", "path": "/x.json.gz"}
    assert load_settings(_training(mode="grpo", data=real), num_devices=1).sft.traces == "teacher"


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"sft": {"batch_size": 12}}, r"config\.sft\.batch_size: the size 12 must be a multiple"),
        ({"eval": {"batch_size": 4}}, r"config\.eval\.batch_size: the size 4 must be a multiple"),
        ({"grpo": {"prompts_per_step": 4}}, r"config\.grpo\.prompts_per_step"),
        (
            {"grpo": {"prompts_per_step": 16, "mini_batches": 4}},
            r"config\.grpo\.mini_batches: the groups per mini-batch 4 must be a multiple .* = 8",
        ),
        ({"mesh": {"shape": (1, 16, 1)}}, r"config\.mesh\.shape: .*needs 16 devices"),
        ({"mesh": {"shape": (3, -1, 1)}}, r"config\.mesh\.shape: .*not divisible by 3"),
    ],
)
def test_batch_sizes_must_divide_by_the_batch_shards(sections, message):
    config = _training(**sections)
    config.mesh.shape = config.mesh.shape if "mesh" in sections else (1, -1, 1)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, num_devices=8)


def test_batch_shards_use_the_mesh_not_the_device_count():
    config = _training(sft={"batch_size": 12}, eval={"batch_size": 6})
    config.mesh.shape = (1, 2, 4)  # 2 batch shards, 4-way tensor parallel
    config.grpo.prompts_per_step = 8
    settings = load_settings(config, num_devices=8)
    assert settings.phases == ("sft", "eval", "grpo", "eval")
