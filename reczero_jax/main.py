"""Entry point: ``python -m reczero_jax.main --config configs/NAME.py [--config.a.b=value]``.

Parses flags, validates the configuration once, and calls one function per mode.
Errors caused by the user's input (config, files, checkpoints) end with a one-line
message and exit status 2, not a traceback.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file under configs/.", lock_config=True
)


def _user_errors() -> tuple[type[Exception], ...]:
    from reczero_jax.config_parsing import ConfigError
    from reczero_jax.data.prompts import PromptTooLongError
    from reczero_jax.hf.checkpoint import HFCheckpointError
    from reczero_jax.hf.safetensors_io import SafetensorsError
    from reczero_jax.model.model_config import ModelConfigError
    from reczero_jax.sampling.sampler import SamplerError
    from reczero_jax.sharding import ShardingError
    from reczero_jax.text.tokenizer import TokenizerError

    errors = [
        ConfigError,
        HFCheckpointError,
        SafetensorsError,
        ModelConfigError,
        SamplerError,
        ShardingError,
        TokenizerError,
        PromptTooLongError,
        FileNotFoundError,
    ]
    try:
        from reczero_jax.data.errors import DataError

        errors.append(DataError)
    except ImportError:
        pass
    return tuple(errors)


def check_inputs(settings) -> None:
    """The folders mode 'generate' and the training modes read hold what they expect,
    checked before any data or weights load (each error names the key, the path and what
    was expected there)."""
    if settings.mode != "generate" and not settings.phases:
        return
    from reczero_jax.engine import plan_phase
    from reczero_jax.hf.checkpoint import check_hf_dir
    from reczero_jax.text.tokenizer import check_tokenizer_dir

    m, resume_from = settings.model, settings.checkpoint.resume_from
    if m.hf_dir:  # its weights are read unless a checkpoint is resumed
        check_hf_dir(m.hf_dir, weights=not resume_from)
    if m.tokenizer_dir or m.hf_dir:
        key = "config.model.tokenizer_dir" if m.tokenizer_dir else "config.model.hf_dir"
        check_tokenizer_dir(m.tokenizer_dir or m.hf_dir, key)
    if resume_from:
        plan_phase(None, [], resume_from, "")  # ConfigError unless it holds a checkpoint


# What device memory grows with in each phase: config key -> what to do with it.
MEMORY_KEYS = {
    "sft": {"sft.micro_groups": "try 1", "sft.batch_size": "lower",
            "sft.max_response_tokens": "lower", "model.remat": "try 'full'"},
    "grpo": {"grpo.micro_groups": "try 1", "grpo.mini_batches": "raise",
             "grpo.prompts_per_step": "lower", "grpo.num_generations": "lower",
             "sampling.max_new_tokens": "lower", "model.remat": "try 'full'"},
    "eval": {"eval.batch_size": "lower", "sampling.max_new_tokens": "lower",
             "data.prompt.max_prompt_tokens": "lower (0 = unlimited)"},
    "generate": {"generate.num_samples": "lower", "sampling.max_new_tokens": "lower"},
    "any": {"model.dtype": "try 'bfloat16'", "model.param_dtype": "try 'bfloat16'"},
}  # fmt: skip


def out_of_memory_message(error: BaseException, settings) -> str | None:
    """One line for a device out-of-memory (XLA's RESOURCE_EXHAUSTED, at compilation or at
    run time): XLA's first line and the config keys that lower memory in this mode, with
    their values; None for any other error."""
    import re

    if not re.search(r"RESOURCE_EXHAUSTED|out of memory", str(error), re.I):
        return None
    advice: dict[str, str] = {}
    for phase in [*(settings.phases or [settings.mode] if settings else []), "any"]:
        advice.update(MEMORY_KEYS.get(phase, {}))

    def now(key: str):
        value = settings
        for part in key.split("."):
            value = getattr(value, part, None)
        return value

    keys = ", ".join(
        f"{key}={now(key)!r} ({what})"
        for key, what in advice.items()
        if what != f"try {now(key)!r}"  # already there
    )
    first = str(error).strip().splitlines()[0][:300]
    return f"out of device memory ({first}); these settings lower it: {keys}"


def run(settings) -> dict:
    """Every mode is ``run(settings) -> results dict``; the training modes are lists of
    phases run by :func:`reczero_jax.rl.run.run`."""
    if settings.mode == "generate":
        from reczero_jax.modes.generate import run as run_mode
    elif settings.mode == "baselines":
        from reczero_jax.modes.baselines import run as run_mode
    elif settings.mode == "prepare":
        from reczero_jax.modes.prepare import run as run_mode
    elif settings.mode == "predict":
        from reczero_jax.modes.predict import run as run_mode
    elif settings.mode == "report":
        from reczero_jax.modes.report import run as run_mode
    else:
        from reczero_jax.rl.run import run as run_mode
    results = run_mode(settings)
    if settings.phases and settings.report.at_end and "preempted" not in results:
        write_report_at_end(settings.workdir)
    return results


def write_report_at_end(workdir: str) -> None:
    """A training run's own report (``report.at_end``); a failure to draw it is a warning:
    the run's results are already written."""
    from reczero_jax import multihost
    from reczero_jax.modes.report import write_report
    from reczero_jax.observe.logs import log

    if not multihost.is_primary():
        return
    try:
        write_report(workdir)
    except Exception as e:  # noqa: BLE001 - the run itself succeeded
        log.warning("the run's report could not be written (%s: %s); run mode=report on %s",
                    type(e).__name__, e, workdir)  # fmt: skip


def quiet_unless_primary() -> None:
    """Only process 0 prints progress: the others' standard output goes to /dev/null
    (their errors still reach standard error)."""
    import jax

    from reczero_jax.observe import logs

    logs.quiet_unless_primary(jax.process_index())  # the others log warnings only
    if jax.process_index() != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process


def explain_bad_override(argv: list[str]) -> str | None:
    """Names the first ``--config.a.b=value`` override whose key does not exist."""
    spec = None
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            spec = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            spec = argv[i + 1]
    if spec is None:
        return None
    try:
        from reczero_jax.settings import load_config_file

        config = load_config_file(spec)
    except Exception:  # noqa: BLE001 - the original flag error is reported instead
        return None
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        node, path = config, "config"
        for part in arg[len("--config.") :].split("=", 1)[0].split("."):
            if not hasattr(node, "keys") or part not in node:
                known = sorted(node.keys()) if hasattr(node, "keys") else []
                return f"{path}.{part}: unknown key; known keys of {path}: {known}"
            node, path = node[part], f"{path}.{part}"
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with one-line errors for unknown or malformed overrides."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError, flags.Error) as e:
        reason = explain_bad_override(argv) or str(e)
        print(f"error: {reason}", file=sys.stderr)
        sys.exit(2)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from reczero_jax.settings import load_settings

    settings = None
    try:
        if _CONFIG.value is None:
            raise SystemExit("error: --config=configs/NAME.py is required")
        settings = load_settings(_CONFIG.value)  # joins the other processes when distributed
        check_inputs(settings)
        quiet_unless_primary()
        run(settings)
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as e:  # XLA's errors (jax.errors.JaxRuntimeError) are RuntimeErrors
        message = out_of_memory_message(e, settings)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    from reczero_jax.huge_pages import reexec_with_huge_pages

    reexec_with_huge_pages()  # glibc's malloc on huge pages (restarts once; see its module)
    app.run(main, flags_parser=parse_flags)
