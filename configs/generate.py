"""Sample G answers for one prompt.

    python -m reczero_jax.main --config configs/generate.py \
        --config.model.hf_dir=/path/to/Qwen2.5-1.5B-Instruct --config.prompt="Hello"

Without ``model.hf_dir`` a tiny random checkpoint is built offline under the workdir
(default /tmp/reczero_jax), so the command runs anywhere; its text is noise.
"""

from reczero_jax.settings import default_config


def get_config(arg=None):
    config = default_config()
    config.mode = "generate"
    config.workdir = "/tmp/reczero_jax"

    # --- Model: a Hugging Face checkpoint folder (empty: tiny random model).
    config.model.hf_dir = ""
    config.model.dtype = "float32"

    # --- Mesh: (data, fsdp, tensor); -1 = all remaining devices. Rows split over
    # data x fsdp, weights over tensor.
    config.mesh.shape = (1, -1, 1)

    # --- Sampling.
    config.sampling.num_samples = 4
    config.sampling.max_new_tokens = 64
    config.sampling.method = "sample"
    config.sampling.temperature = 1.0
    config.sampling.top_p = 1.0
    config.sampling.top_k = 0
    config.sampling.stop_strings = ("</rate>",)

    # --- The prompt (chat template applied when chat=True).
    config.prompt = "Describe this user's taste in one sentence."
    config.system_prompt = ""
    config.chat = True

    if arg == "small":  # a quick smoke run
        config.sampling.max_new_tokens = 16
    return config
