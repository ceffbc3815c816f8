"""python -m reczero_jax.main --config configs/ablation_reward_exact.py \
    --config.workdir=/tmp/abl_exact

Ablation of the reward: preset 'exact' instead of the paper's, otherwise the CPU demo
(``configs/demo.py``). Paper scale: --config.grpo.reward_preset=exact on
``configs/reczero_qwen2_5_7b.py``.
"""

import importlib.util
import pathlib


def get_config(arg=None):
    path = pathlib.Path(__file__).with_name("demo.py")
    spec = importlib.util.spec_from_file_location("demo", path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    config = demo.get_config(arg)
    config.workdir = "/tmp/abl_reward_exact"
    config.grpo.reward_preset = "exact"
    return config
