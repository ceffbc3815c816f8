"""python -m reczero_jax.main --config configs/reczero_qwen2_5_7b.py \
    --config.model.hf_dir=/ckpt/Qwen2.5-7B-Instruct \
    --config.data.source=amazon2014 --config.data.path=/data/reviews_CDs_and_Vinyl_5.json.gz \
    --config.workdir=gs://bucket/runs/reczero_cds

RecZero as in the paper: GRPO from Qwen2.5-7B-Instruct with no cold start; G = 8 samples
at temperature 1.0 for each of 8 prompts per step, constant learning rate 2e-6 (AdamW,
weight decay 0.01, clipping 1.0), KL weight 0, one epoch over the rollout (about 300
steps); the paper's reward (format +-0.5, answer 1 - |error| / 4). Meant for a TPU pod
slice: weights FSDP over 'fsdp' and tensor-parallel over 'tensor' (mesh (1, -1, 4)); the
sampler keeps weights tensor-parallel only. ``:yelp`` switches the data source.
"""

from reczero_jax.settings import default_config


def get_config(arg=None):
    config = default_config()
    config.mode = "grpo"
    config.seed = 0
    config.workdir = "/tmp/reczero_qwen2_5_7b"

    # --- Model: Qwen2.5-7B-Instruct (Hugging Face safetensors).
    config.model.hf_dir = "Qwen2.5-7B-Instruct"  # --config.model.hf_dir=/ckpt/Qwen2.5-7B-Instruct
    config.model.dtype = "bfloat16"
    config.model.param_dtype = "float32"
    config.model.remat = "full"

    # --- Mesh: (data, fsdp, tensor).
    config.mesh.shape = (1, -1, 4)

    # --- Data: the paper's prompt (chat template), its filters.
    config.data.source = "amazon2014"
    config.data.path = "reviews_CDs_and_Vinyl_5.json.gz"  # --config.data.path=...
    config.data.history_len = 10
    config.data.item_history_len = 10
    config.data.review_chars = 400
    config.data.min_history_total = 5
    config.data.prompt.mode = "chat"
    config.data.prompt.variant = "four_step"
    config.data.prompt.max_prompt_tokens = 3072

    # --- Sampling at temperature 1.0 (G is grpo.num_generations).
    config.sampling.max_new_tokens = 1024
    config.sampling.temperature = 1.0
    config.sampling.prompt_buckets = (1024, 2048, 3072)

    # --- GRPO: the paper's settings.
    config.grpo.num_generations = 8  # G answers per prompt
    config.grpo.steps = 300
    config.grpo.prompts_per_step = 8
    config.grpo.epochs = 1
    config.grpo.mini_batches = 1
    config.grpo.micro_groups = 2
    config.grpo.advantage_std = "unbiased"
    config.grpo.aggregation = "token-mean"
    config.grpo.eps_low = 0.2
    config.grpo.eps_high = 0.2
    config.grpo.kl_coef = 0.0
    config.grpo.reward_preset = "paper"
    config.grpo.optim.learning_rate = 2e-6
    config.grpo.optim.weight_decay = 0.01
    config.grpo.optim.grad_clip = 1.0
    config.grpo.eval_every = 50
    config.grpo.eval_examples = 512

    # --- Evaluation and checkpoints.
    config.eval.split = "test"
    config.eval.batch_size = 64
    config.checkpoint.save_every = 50

    if arg == "yelp":
        config.data.source = "yelp"
    return config
