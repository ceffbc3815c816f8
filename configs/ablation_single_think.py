"""python -m reczero_jax.main --config configs/ablation_single_think.py \
    --config.workdir=/tmp/abl_single_think

Ablation of the answer format: 'single_think' instead of the four tagged steps (prompt
instruction, teacher traces and reward grammar all switch together), otherwise the CPU demo
(``configs/demo.py``). For the paper-scale version, apply the same overrides to
``configs/reczero_qwen2_5_7b.py``: --config.data.prompt.variant=single_think.
"""

import pathlib

from reczero_jax.settings import load_config_file


def get_config(arg=None):
    demo = str(pathlib.Path(__file__).with_name("demo.py"))
    config = load_config_file(demo + (f":{arg}" if arg else ""))
    config.workdir = "/tmp/abl_single_think"
    config.data.prompt.variant = "single_think"
    return config
