"""Bad input gets one clear line and exit status 2, never a traceback from deep inside JAX
(issue 13, item 5): missing files and folders are named before anything loads, a data set
with no usable example says what each filter removed, a tokenizer without a chat template
falls back to raw text with a warning, a malformed checkpoint names the file and the
tensor, and an out-of-memory names the config keys that lower memory.

The command line runs in-process: flags parsed by ``main.parse_flags``, then ``main.main``.
"""

from __future__ import annotations

import json
import logging
import pathlib
import re
import struct
import sys

import jax
import pytest
from absl import flags

from reczero_jax import main as cli
from reczero_jax.data.data_config import DataConfig, PromptConfig, SyntheticConfig
from reczero_jax.data.errors import DataError
from reczero_jax.data.examples import build_examples
from reczero_jax.data.loader import load_raw
from reczero_jax.data.prompts import build_prompt
from reczero_jax.data.splits import assign_splits
from reczero_jax.data.synthetic import make_world
from reczero_jax.hf import safetensors_io as st
from reczero_jax.hf.checkpoint import HFCheckpointError, check_hf_dir
from reczero_jax.text.tokenizer import (
    RAW_TEXT_CHAT_TEMPLATE,
    TokenizerError,
    check_tokenizer_dir,
    encode_chat,
    encode_text,
    load_tokenizer,
)
from tests.fixtures.tokenizer import build_tiny_tokenizer

GENERATE = "--config=configs/generate.py"


def parse(monkeypatch, *args: str) -> None:
    """Parses the flags as ``app.run`` does (config_flags reads its overrides from sys.argv)."""
    argv = ["reczero_jax.main", *args]
    monkeypatch.setattr(sys, "argv", argv)
    reset_flags()
    cli.parse_flags(argv)


def reset_flags() -> None:
    """Unparsed flags, without the ``--config.*`` overrides an earlier parse defined."""
    for name in [n for n in flags.FLAGS if n.startswith("config.")]:
        delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """``run_cli(*flags) -> (exit status, stderr)`` of the command line, in this process."""

    def run(*args: str) -> tuple[int, str]:
        parse(monkeypatch, *args)
        status = 0
        try:
            cli.main(["reczero_jax.main"])
        except SystemExit as e:
            status = e.code
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return status, err

    yield run
    reset_flags()


def error_line(err: str) -> str:
    """The one ``error: ...`` line of stderr (absl warnings may precede it)."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def no_run(monkeypatch):
    """Fails the test if a mode starts: the error must come before anything loads."""

    def fail(settings):
        raise AssertionError(f"mode {settings.mode} started")

    monkeypatch.setattr(cli, "run", fail)


# ----------------------------------------------------------------------------- 1. missing paths
def test_hf_dir_check_names_path_and_what_was_expected(tmp_path):
    with pytest.raises(HFCheckpointError, match=r"config.model.hf_dir: .*nope does not exist"):
        check_hf_dir(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(HFCheckpointError, match="is not a folder .*expected a Hugging Face"):
        check_hf_dir(tmp_path / "file")
    with pytest.raises(HFCheckpointError, match="holds no config.json"):
        check_hf_dir(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(HFCheckpointError, match="neither model.safetensors nor .*index.json"):
        check_hf_dir(tmp_path)
    check_hf_dir(tmp_path, weights=False)  # resuming a checkpoint: config.json is enough
    (tmp_path / st.SINGLE_FILE).write_bytes(b"")
    check_hf_dir(tmp_path)


def test_tokenizer_dir_check_names_path_and_what_was_expected(tmp_path):
    with pytest.raises(TokenizerError, match=r"config.model.tokenizer_dir: .*nope does not exist"):
        check_tokenizer_dir(tmp_path / "nope")
    with pytest.raises(TokenizerError, match="holds no tokenizer files .*tokenizer.json"):
        check_tokenizer_dir(tmp_path, "config.model.hf_dir")
    (tmp_path / "tokenizer.json").write_text("{}")
    check_tokenizer_dir(tmp_path)


@pytest.mark.parametrize(
    "override, words",
    [
        (
            "--config.model.hf_dir={tmp}/missing",
            "config.model.hf_dir: {tmp}/missing does not exist",
        ),
        ("--config.model.hf_dir={tmp}", "config.model.hf_dir: {tmp} holds no config.json"),
        ("--config.model.tokenizer_dir={tmp}/t", "config.model.tokenizer_dir: {tmp}/t does not"),
        ("--config.checkpoint.resume_from={tmp}/run", "{tmp}/run' holds no Orbax checkpoint"),
    ],
)
@pytest.mark.parametrize("mode", ["generate", "grpo"])
def test_missing_paths_are_named_before_anything_loads(
    run_cli, no_run, tmp_path, override, words, mode
):
    status, err = run_cli(
        GENERATE, f"--config.mode={mode}", f"--config.workdir={tmp_path}/work",
        override.format(tmp=tmp_path),
    )  # fmt: skip
    assert status == 2 and words.format(tmp=tmp_path) in error_line(err)


def test_missing_weights_name_the_folder_and_the_files_expected(run_cli, no_run, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    status, err = run_cli(GENERATE, f"--config.model.hf_dir={tmp_path}")
    line = error_line(err)
    assert status == 2 and str(tmp_path) in line
    assert "neither model.safetensors nor model.safetensors.index.json" in line


def test_missing_data_file_is_named(run_cli, tmp_path):
    status, err = run_cli(
        "--config=configs/baselines.py", f"--config.workdir={tmp_path}",
        "--config.data.source=amazon2014", f"--config.data.path={tmp_path}/reviews.json.gz",
    )  # fmt: skip
    assert status == 2
    assert f"amazon2014 reviews file {tmp_path}/reviews.json.gz does not exist" in error_line(err)


# ----------------------------------------------------------------------------- 2. empty data
SPARSE = DataConfig(
    synthetic=SyntheticConfig(num_users=30, num_items=10, interactions_per_user=4),
    min_history_total=25,
)


def test_no_usable_example_names_each_filter_and_its_count():
    with pytest.raises(DataError) as info:
        load_raw(SPARSE)
    message = str(info.value)
    assert "\n" not in message and "no usable train example" in message
    world = make_world(SPARSE.synthetic)
    split = assign_splits(world.data.ratings, SPARSE.split)
    _, stats = build_examples(
        world.data.ratings, world.data.items, split, min_history_total=25, splits=("train",)
    )
    assert sum(stats.values()) == int((split == 0).sum()) > 0  # every target was removed
    for key, what in [
        ("dropped_empty_user_history", "'no earlier rating by the user'"),
        ("dropped_empty_item_history", "by another user' (data.item_history_len=10;"),
        ("dropped_min_history_total", "'fewer than data.min_history_total=25 history"),
    ]:
        assert re.search(re.escape(what) + rf"[^,]*? removed {stats[key]}\b", message), (
            key,
            message,
        )


def test_a_split_left_empty_names_the_split_rule():
    cfg = DataConfig(synthetic=SyntheticConfig(num_users=20, num_items=10, interactions_per_user=2))
    with pytest.raises(DataError, match=r"data.split='leave_last_out' gave 0 of 40 .*3 or more"):
        load_raw(cfg)


def test_empty_test_split_through_the_command_line(run_cli, tmp_path):
    status, err = run_cli(
        "--config=configs/baselines.py", f"--config.workdir={tmp_path}",
        "--config.data.synthetic.num_users=30", "--config.data.synthetic.num_items=10",
        "--config.data.synthetic.interactions_per_user=4", "--config.data.min_history_total=50",
    )  # fmt: skip
    line = error_line(err)
    assert status == 2 and "no usable test example" in line
    assert "'fewer than data.min_history_total=50 history entries' removed" in line


# ----------------------------------------------------------------------------- 3. chat template
@pytest.fixture(scope="module")
def no_template_dir(tmp_path_factory) -> pathlib.Path:
    source = build_tiny_tokenizer(tmp_path_factory.mktemp("tok"))
    folder = tmp_path_factory.mktemp("no_template_tok")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((source / name).read_bytes())
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_tokenizer_without_chat_template_falls_back_to_raw_text(no_template_dir):
    logger, seen = logging.getLogger("reczero_jax.text.tokenizer"), _Records()
    logger.addHandler(seen)
    try:
        tok = load_tokenizer(no_template_dir)
    finally:
        logger.removeHandler(seen)
    warned = [r.getMessage() for r in seen.records if r.levelno == logging.WARNING]
    assert any("no chat template" in m and str(no_template_dir) in m for m in warned), warned
    assert tok.chat_template == RAW_TEXT_CHAT_TEMPLATE
    assert encode_chat(tok, "Rate it.", system="Be brief.") == encode_text(
        tok, "Be brief.\n\nRate it.\n"
    )
    assert encode_chat(tok, "Rate it.") == encode_text(tok, "Rate it.\n")
    # The training prompts in chat mode are then exactly the raw mode's.
    data = load_raw(DataConfig(synthetic=SyntheticConfig(num_users=40, num_items=20)))
    example = data.examples["test"][0]
    chat = build_prompt(example, tok, PromptConfig(mode="chat"))
    raw = build_prompt(example, tok, PromptConfig(mode="raw"))
    assert chat == raw


# ----------------------------------------------------------------------------- 4. bad checkpoint
@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory) -> pathlib.Path:
    from reczero_jax.hf.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_hf") / "model")


def _rewrite_header(src: pathlib.Path, dst: pathlib.Path, change) -> pathlib.Path:
    """A copy of the checkpoint folder whose model.safetensors header went through
    ``change(header)``."""
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    content = (src / st.SINGLE_FILE).read_bytes()
    (n,) = struct.unpack("<Q", content[:8])
    header = json.loads(content[8 : 8 + n])
    change(header)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    (dst / st.SINGLE_FILE).write_bytes(struct.pack("<Q", len(blob)) + blob + content[8 + n :])
    return dst


def _not_an_object(header):
    header["model.norm.weight"] = [1, 2]


def _overlap(header):
    header["model.norm.weight"]["data_offsets"] = [0, 4 * header["model.norm.weight"]["shape"][0]]


@pytest.mark.parametrize(
    "change, words",
    [
        (_not_an_object, "tensor 'model.norm.weight': entry is a list, expected an object"),
        (_overlap, "overlaps tensor"),
    ],
)
def test_malformed_checkpoint_is_one_line_naming_file_and_tensor(
    run_cli, tiny_hf, tmp_path, change, words
):
    bad = _rewrite_header(tiny_hf, tmp_path / "bad", change)
    status, err = run_cli(GENERATE, f"--config.model.hf_dir={bad}")
    line = error_line(err)
    assert status == 2 and f"{bad / st.SINGLE_FILE}" in line and words in line
    assert "model.norm.weight" in line


# ----------------------------------------------------------------------------- 5. out of memory
OOM_RUNTIME = "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 12.50GiB."
OOM_COMPILE = (
    "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space "
    "hbm. Used 20.51G of 15.48G hbm. Exceeded hbm capacity by 5.03G.\n\nTotal hbm usage..."
)


@pytest.mark.parametrize("text", [OOM_RUNTIME, OOM_COMPILE])
def test_out_of_memory_names_the_keys_that_lower_memory(run_cli, monkeypatch, tmp_path, text):
    def oom(settings):
        raise jax.errors.JaxRuntimeError(text)

    monkeypatch.setattr(cli, "run", oom)
    status, err = run_cli(GENERATE, "--config.mode=grpo", f"--config.workdir={tmp_path}")
    line = error_line(err)
    assert status == 2 and text.splitlines()[0] in line
    for key in (
        "grpo.micro_groups=0 (try 1)",
        "grpo.mini_batches=1 (raise)",
        "grpo.prompts_per_step=8 (lower)",
        "grpo.num_generations=8",
        "sampling.max_new_tokens=64",
        "model.remat='none' (try 'full')",
        "model.dtype='float32' (try 'bfloat16')",
        "model.param_dtype='float32'",
        "eval.batch_size=64",
    ):
        assert key in line, (key, line)
    assert "sft." not in line  # mode grpo runs no SFT


def test_out_of_memory_advice_skips_what_is_already_set(run_cli, monkeypatch, tmp_path):
    def oom(settings):
        raise jax.errors.JaxRuntimeError(OOM_RUNTIME)

    monkeypatch.setattr(cli, "run", oom)
    status, err = run_cli(
        GENERATE, "--config.mode=sft", f"--config.workdir={tmp_path}",
        "--config.model.remat=full", "--config.model.dtype=bfloat16",
    )  # fmt: skip
    line = error_line(err)
    assert status == 2 and "sft.micro_groups=0 (try 1)" in line and "sft.batch_size=16" in line
    assert "model.remat" not in line and "model.dtype" not in line
    assert "model.param_dtype='float32' (try 'bfloat16')" in line


def test_out_of_memory_while_sampling_in_generate_mode(run_cli, monkeypatch, tmp_path):
    from reczero_jax.sampling.sampler import GroupSampler

    def oom(self, *args, **kwargs):
        raise jax.errors.JaxRuntimeError(OOM_RUNTIME)

    monkeypatch.setattr(GroupSampler, "sample", oom)
    status, err = run_cli(GENERATE, f"--config.workdir={tmp_path}")
    line = error_line(err)
    assert status == 2 and "out of device memory" in line
    assert "generate.num_samples=4" in line and "sampling.max_new_tokens=64" in line
    assert "grpo." not in line and "model.remat" not in line


def test_other_runtime_errors_are_not_hidden(run_cli, monkeypatch, tmp_path):
    def bug(settings):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    monkeypatch.setattr(cli, "run", bug)
    parse(monkeypatch, GENERATE, f"--config.workdir={tmp_path}")
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        cli.main(["reczero_jax.main"])
