"""Sample answers to one prompt.

    python -m reczero_jax.main --config configs/generate.py \
        --config.model.hf_dir=/path/to/Qwen2.5-1.5B-Instruct --config.generate.prompt="Hello"

Without ``model.hf_dir`` a small random model (``model.scratch`` shapes) with a tokenizer
trained offline is used, so the command runs anywhere; its text is noise.
``--config.checkpoint.resume_from=DIR`` samples from a training checkpoint instead.
"""

from reczero_jax.settings import default_config


def get_config(arg=None):
    config = default_config()
    config.mode = "generate"
    config.workdir = "/tmp/reczero_jax"

    # --- Model: a Hugging Face checkpoint folder (empty: a random scratch model).
    config.model.hf_dir = ""
    config.model.dtype = "float32"

    # --- Mesh: (data, fsdp, tensor); -1 = all remaining devices. Rows split over
    # data x fsdp, weights over tensor.
    config.mesh.shape = (1, -1, 1)

    # --- Sampling.
    config.sampling.max_new_tokens = 64
    config.sampling.method = "sample"
    config.sampling.temperature = 1.0
    config.sampling.top_p = 1.0
    config.sampling.top_k = 0
    config.sampling.stop_strings = ("</rate>",)

    # --- The prompt (chat template applied when chat=True) and how many answers.
    config.generate.prompt = "Describe this user's taste in one sentence."
    config.generate.system_prompt = ""
    config.generate.chat = True
    config.generate.num_samples = 4

    if arg == "small":  # a quick smoke run
        config.sampling.max_new_tokens = 16
    return config
