"""Mode 'generate': print ``generate.num_samples`` answers to one prompt."""

from __future__ import annotations

import time

import numpy as np

from reczero_jax import sharding
from reczero_jax.engine import build_engine, device_summary, plan_phase
from reczero_jax.observe.logs import log
from reczero_jax.settings import Settings
from reczero_jax.text.tokenizer import encode_chat, encode_text


def run(settings: Settings) -> dict:
    g = settings.generate
    engine = build_engine(settings)
    source = plan_phase(None, [], settings.checkpoint.resume_from, settings.model.hf_dir).initial
    params = engine.weights(source, sharding.SAMPLE_RULES)
    log.info("weights: %s on %s", source, device_summary(engine.mesh))
    if g.chat:
        ids = encode_chat(engine.tokenizer, g.prompt, g.system_prompt or None)
    else:
        ids = encode_text(engine.tokenizer, g.prompt)
    start = time.perf_counter()
    out = engine.sampler().sample(params, [ids], g.num_samples)
    tokens, lengths = np.asarray(out.tokens)[0], np.asarray(out.lengths)[0]  # prompt 0: [G, T]
    seconds = time.perf_counter() - start
    texts = []
    for i in range(g.num_samples):
        text = engine.tokenizer.decode(tokens[i, : lengths[i]].tolist(), skip_special_tokens=False)
        texts.append(text)
        print(f"--- sample {i + 1}/{g.num_samples} ({lengths[i]} tokens)\n{text}")
    print(f"--- {int(lengths.sum())} tokens in {seconds:.2f} s (first call includes compilation)")
    return {"samples": texts, "lengths": lengths.tolist()}
