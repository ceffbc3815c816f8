"""python -m reczero_jax.main --config configs/ablation_reward_exact.py \
    --config.workdir=/tmp/abl_exact

Ablation of the reward: preset 'exact' instead of the paper's, otherwise the CPU demo
(``configs/demo.py``). Paper scale: --config.grpo.reward_preset=exact on
``configs/reczero_qwen2_5_7b.py``.
"""

import pathlib

from reczero_jax.settings import load_config_file


def get_config(arg=None):
    demo = str(pathlib.Path(__file__).with_name("demo.py"))
    config = load_config_file(demo + (f":{arg}" if arg else ""))
    config.workdir = "/tmp/abl_reward_exact"
    config.grpo.reward_preset = "exact"
    return config
