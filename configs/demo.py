"""python -m reczero_jax.main --config configs/demo.py --config.workdir=/tmp/reczero_demo

The offline CPU demo (RecOne on the synthetic world): a tiny Qwen2-style model trained
from scratch with a BPE tokenizer learned from the world's own texts; supervised cold start
on the weak teacher's noisy traces, then GRPO; strict MAE on the synthetic test split,
beside the teacher's noise-free rule, the Bayes-optimal floor and the classical baselines.
Runs in about 10 minutes on 2 CPU cores (README: results). ``:quick`` is a 1-minute smoke run.
"""

from reczero_jax.settings import default_config


def get_config(arg=None):
    config = default_config()
    config.mode = "recone"
    config.seed = 0
    config.workdir = "/tmp/reczero_demo"

    # --- Data: the synthetic world, short histories, no instruction text (a model
    # trained from scratch learns the answer format from the cold start).
    config.data.source = "synthetic"
    config.data.synthetic.num_users = 1000
    config.data.synthetic.num_items = 120
    config.data.synthetic.interactions_per_user = 16
    config.data.synthetic.teacher_noise = 0.5
    config.data.history_len = 4
    config.data.item_history_len = 0  # other users' reviews name the item's genres too
    config.data.prompt.mode = "raw"
    config.data.prompt.raw_template = "{inputs}\n"
    config.data.prompt.max_prompt_tokens = 176  # the prompt bucket (the longest is ~165)

    # --- Model: trained from scratch (model.hf_dir empty).
    config.model.hf_dir = ""
    config.model.scratch.hidden_size = 128
    config.model.scratch.intermediate_size = 256
    config.model.scratch.num_layers = 2
    config.model.scratch.num_heads = 4
    config.model.scratch.num_kv_heads = 2
    config.model.scratch.head_dim = 32
    config.model.scratch.tokenizer_vocab_size = 1024

    # --- Mesh: all local devices on the batch.
    config.mesh.shape = (1, -1, 1)

    # --- Sampling (rollouts and evaluation).
    config.sampling.max_new_tokens = 96
    config.sampling.temperature = 1.0
    # One prompt bucket: every function compiles once, in the first step (README:
    # compilations), where (160, 192) compiled again at the first batch over 160 tokens.
    config.sampling.prompt_buckets = (176,)

    # --- RecOne cold start on the teacher's noisy traces, a wrong rating rewritten with the
    # true one shown (the paper's cold start; README: the CPU demo, ablation).
    config.sft.traces = "teacher"
    config.sft.rewrite_wrong = True
    config.sft.num_traces = 12000
    config.sft.steps = 2000
    config.sft.batch_size = 16
    config.sft.max_response_tokens = 96
    config.sft.optim.learning_rate = 3e-3
    config.sft.optim.warmup_steps = 20
    config.sft.optim.decay_steps = 2000

    # --- GRPO.
    config.grpo.num_generations = 8  # G answers per prompt
    config.grpo.steps = 200
    config.grpo.prompts_per_step = 16
    config.grpo.epochs = 1
    config.grpo.reward_preset = "paper"
    config.grpo.optim.learning_rate = 1e-4
    config.grpo.optim.weight_decay = 0.0
    # Against group collapse (README: the CPU demo, ablation): a KL penalty to the cold
    # start keeps the analysis the rating depends on, and dynamic sampling refills each
    # step with groups whose rewards differ (at most 3 rollouts of 16 prompts per step).
    config.grpo.kl_coef = 0.05
    config.grpo.dynamic_sampling = True
    config.grpo.dynamic_max_rounds = 3
    config.grpo.eval_every = 100
    config.grpo.eval_examples = 256

    # --- Evaluation on the whole synthetic test split, greedy.
    config.eval.split = "test"
    config.eval.batch_size = 128
    config.checkpoint.save_every = 100
    config.report.at_end = True  # workdir/report.md and its plots (mode=report)

    if arg == "quick":
        config.sft.num_traces = 256
        config.sft.steps = 20
        config.grpo.steps = 4
        config.grpo.eval_every = 2
        config.grpo.eval_examples = 64
        config.eval.num_examples = 128
    return config
