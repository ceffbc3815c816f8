"""Mode 'generate': print G samples for one prompt."""

from __future__ import annotations

import time

import numpy as np

from reczero_jax.config_parsing import ConfigError
from reczero_jax.engine import build_engine, device_summary
from reczero_jax.settings import Settings
from reczero_jax.text.tokenizer import encode_chat, encode_text


def run(settings: Settings) -> dict:
    if not settings.prompt:
        raise ConfigError('config.prompt: mode "generate" needs a prompt (--config.prompt="...")')
    engine = build_engine(settings)
    print(f"model {engine.model_dir} on {device_summary(engine.mesh)}")
    if settings.chat:
        ids = encode_chat(engine.tokenizer, settings.prompt, settings.system_prompt or None)
    else:
        ids = encode_text(engine.tokenizer, settings.prompt)
    g = settings.sampling.num_samples
    start = time.perf_counter()
    out = engine.sampler.sample(engine.params, [ids], g)
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    seconds = time.perf_counter() - start
    texts = []
    for i in range(g):
        text = engine.tokenizer.decode(tokens[i, : lengths[i]].tolist(), skip_special_tokens=False)
        texts.append(text)
        print(f"--- sample {i + 1}/{g} ({lengths[i]} tokens)\n{text}")
    print(f"--- {int(lengths.sum())} tokens in {seconds:.2f} s (first call includes compilation)")
    return {"samples": texts, "lengths": lengths.tolist()}
