"""A run's resolved configuration, ``workdir/config.json``: written when a run starts, read
back by everything that works on a finished run (``mode=predict``, ``mode=report``,
``tools/reading_probe``), so that they see the run as it was trained, command-line
overrides included, not as its config file reads today."""

from __future__ import annotations

import dataclasses
import json

from reczero_jax.config_parsing import ConfigError
from reczero_jax.paths import as_path
from reczero_jax.settings import Settings, load_settings

CONFIG_FILE = "config.json"


def write_run_config(workdir, settings: Settings) -> None:
    """``workdir/config.json``: every key of ``settings`` (JSON; tuples become lists)."""
    path = as_path(workdir) / CONFIG_FILE
    path.write_text(json.dumps(dataclasses.asdict(settings), indent=2, sort_keys=True) + "\n")


def read_run_config(run_dir, num_devices: int | None = None, **changes) -> Settings:
    """The Settings a run in ``run_dir`` was trained with, validated again, with ``workdir``
    = ``run_dir`` (the run may have moved); ``changes`` are top-level keys to replace (e.g.
    ``mode='eval'``). Raises ConfigError naming the file when it is missing or unreadable."""
    path = as_path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise ConfigError(
            f"{path} does not exist: expected the config.json that every run writes in its "
            f"workdir; is {run_dir} a run directory (the workdir of a training run)?"
        )
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable config.json ({e})") from e
    config.update({"workdir": str(run_dir), **changes})
    return load_settings(config, num_devices=num_devices)
