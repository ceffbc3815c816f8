"""python -m reczero_jax.main --config configs/ablation_rating_only.py \
    --config.workdir=/tmp/abl_rating_only

Ablation of the answer format: 'rating_only' instead of the four tagged steps (prompt
instruction, teacher traces and reward grammar all switch together), otherwise the CPU demo
(``configs/demo.py``). For the paper-scale version, apply the same overrides to
``configs/reczero_qwen2_5_7b.py``: --config.data.prompt.variant=rating_only.
"""

import importlib.util
import pathlib


def get_config(arg=None):
    path = pathlib.Path(__file__).with_name("demo.py")
    spec = importlib.util.spec_from_file_location("demo", path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    config = demo.get_config(arg)
    config.workdir = "/tmp/abl_rating_only"
    config.data.prompt.variant = "rating_only"
    return config
