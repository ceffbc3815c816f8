"""python -m reczero_jax.main --config configs/recone_qwen2_5_7b.py \
    --config.model.hf_dir=/ckpt/Qwen2.5-7B-Instruct \
    --config.sft.traces_path=/data/traces_cds.jsonl \
    --config.data.source=amazon2014 --config.data.path=/data/reviews_CDs_and_Vinyl_5.json.gz \
    --config.workdir=gs://bucket/runs/recone_cds

RecOne as in the paper: a supervised cold start on about 1,000 reasoning traces in the
four-tag format (a teacher LLM's, given as JSONL; or ``--config.sft.traces=self`` to let
the model write and rewrite its own), then the GRPO stage of
``configs/reczero_qwen2_5_7b.py``.
"""

import pathlib

from reczero_jax.settings import load_config_file


def get_config(arg=None):
    reczero = str(pathlib.Path(__file__).with_name("reczero_qwen2_5_7b.py"))
    config = load_config_file(reczero + (f":{arg}" if arg else ""))
    config.mode = "recone"
    config.workdir = "/tmp/recone_qwen2_5_7b"

    # --- Cold start: ~1,000 traces, response tokens only.
    config.sft.traces = "file"
    config.sft.traces_path = "traces.jsonl"  # --config.sft.traces_path=...
    config.sft.num_traces = 1000
    config.sft.steps = 125  # 2 epochs of 1,000 traces at 16 per step
    config.sft.batch_size = 16
    config.sft.micro_groups = 4
    config.sft.max_response_tokens = 1024
    config.sft.optim.learning_rate = 1e-5
    config.sft.optim.warmup_steps = 10
    return config
