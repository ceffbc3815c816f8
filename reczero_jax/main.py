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
        FileNotFoundError,
    ]
    try:
        from reczero_jax.data.errors import DataError

        errors.append(DataError)
    except ImportError:
        pass
    return tuple(errors)


def run(settings) -> dict:
    """Every mode is ``run(settings) -> results dict``; the training modes are lists of
    phases run by :func:`reczero_jax.rl.run.run`."""
    if settings.mode == "generate":
        from reczero_jax.modes.generate import run as run_mode
    elif settings.mode == "baselines":
        from reczero_jax.modes.baselines import run as run_mode
    elif settings.mode == "prepare":
        from reczero_jax.modes.prepare import run as run_mode
    else:
        from reczero_jax.rl.run import run as run_mode
    return run_mode(settings)


def quiet_unless_primary() -> None:
    """Only process 0 prints progress: the others' standard output goes to /dev/null
    (their errors still reach standard error)."""
    import jax

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

    try:
        if _CONFIG.value is None:
            raise SystemExit("error: --config=configs/NAME.py is required")
        settings = load_settings(_CONFIG.value)  # joins the other processes when distributed
        quiet_unless_primary()
        run(settings)
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
