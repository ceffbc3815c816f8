"""The group sampler against full forwards, transformers' generate, and itself."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
import transformers

from reczero_jax.model import compute_logits
from reczero_jax.sampling.methods import Greedy, Sampling
from reczero_jax.sampling.sampler import GroupSampler, SamplerError, SamplerSpec
from reczero_jax.text.stop_strings import StopStrings, first_stop_index
from reczero_jax.text.token_bytes import decode_bytes, token_byte_table
from reczero_jax.text.tokenizer import load_tokenizer
from tests.fixtures.tokenizer import build_tiny_tokenizer
from tests.sampling.conftest import load_on, mesh_of

PROMPTS = [[5, 17, 300, 42, 9, 77], [11, 12, 13], list(range(100, 113))]


def _spec(method, max_new=12, eos=(2,), buckets=(8, 16, 32)):
    return SamplerSpec(
        max_new_tokens=max_new, method=method, eos_ids=eos, pad_id=0, buckets=buckets
    )


def _full_logprobs(config, params, prompts, generated, temperature=1.0, length=32):
    """log_softmax(logits / T) of full forwards at each generated token, one batch.

    Sequences are right-padded to ``length``, which leaves causal logits unchanged.
    """
    seqs = np.zeros((len(prompts), length), np.int32)
    for i, (p, g) in enumerate(zip(prompts, generated)):
        seqs[i, : len(p) + len(g)] = list(p) + list(g)
    logp = np.asarray(jax.nn.log_softmax(compute_logits(config, params, seqs) / temperature, -1))
    return [
        logp[i, np.arange(len(p) - 1, len(p) - 1 + len(g)), g]
        for i, (p, g) in enumerate(zip(prompts, generated))
    ]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_equal_full_forward(qwen2, temperature):
    config, params, _ = qwen2
    sampler = GroupSampler(config, mesh_of((1, 1, 1)), _spec(Sampling(temperature)))
    out = sampler.sample(params, PROMPTS, 3, key=jax.random.key(3))
    tokens, logprobs, lengths = map(np.asarray, (out.tokens, out.logprobs, out.lengths))
    assert tokens.shape == (9, 12)
    prompts = [PROMPTS[row // 3] for row in range(9)]
    refs = _full_logprobs(
        config, params, prompts, [tokens[r, : lengths[r]] for r in range(9)], temperature
    )
    for row in range(9):
        n = lengths[row]
        np.testing.assert_allclose(logprobs[row, :n], refs[row], atol=2e-5)
        assert np.all(logprobs[row, n:] == 0) and np.all(tokens[row, n:] == 0)
        assert out.stopped[row] == (n < 12 or tokens[row, n - 1] == 2)


def test_greedy_equals_transformers_generate(qwen2):
    config, params, hf_dir = qwen2
    sampler = GroupSampler(config, mesh_of((1, 1, 1)), _spec(Greedy(), max_new=10))
    out = sampler.sample(params, PROMPTS, 1)
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    for row, prompt in enumerate(PROMPTS):
        with torch.no_grad():
            ref = hf.generate(
                torch.tensor([prompt]),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                do_sample=False,
                max_new_tokens=10,
                eos_token_id=2,
                pad_token_id=0,
            )[0, len(prompt) :].tolist()
        n = int(out.lengths[row])
        assert np.asarray(out.tokens[row, :n]).tolist() == ref


def test_group_shares_one_prefill(qwen2):
    """G samples of one prefilled prompt == G separate prefills of the same prompt."""
    config, params, _ = qwen2
    sampler = GroupSampler(config, mesh_of((1, 1, 1)), _spec(Sampling(1.0)))
    key = jax.random.key(7)
    shared = sampler.sample(params, [PROMPTS[0]], 4, key=key)
    separate = sampler.sample(params, [PROMPTS[0]] * 4, 1, key=key)
    np.testing.assert_array_equal(np.asarray(shared.tokens), np.asarray(separate.tokens))
    np.testing.assert_allclose(
        np.asarray(shared.logprobs), np.asarray(separate.logprobs), atol=1e-5
    )


@pytest.mark.parametrize("mesh_shape", [(2, 2, 2), (1, 4, 2), (8, 1, 1)])
def test_sharded_equals_unsharded(qwen2, mesh_shape):
    config, params, hf_dir = qwen2
    key = jax.random.key(11)
    ref = GroupSampler(config, mesh_of((1, 1, 1)), _spec(Sampling(1.0))).sample(
        params, PROMPTS, 4, key=key
    )
    mesh = mesh_of(mesh_shape)
    sharded_params = load_on(mesh, config, hf_dir)
    out = GroupSampler(config, mesh, _spec(Sampling(1.0))).sample(
        sharded_params, PROMPTS, 4, key=key
    )
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ref.tokens))
    np.testing.assert_array_equal(np.asarray(out.lengths), np.asarray(ref.lengths))
    np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(ref.logprobs), atol=1e-5)


def test_compiles_once_per_bucket_and_keys_change(qwen2):
    config, params, _ = qwen2
    sampler = GroupSampler(config, mesh_of((1, 1, 1)), _spec(Sampling(1.0)))
    first = sampler.sample(params, [PROMPTS[0], PROMPTS[1]], 2)
    second = sampler.sample(params, [PROMPTS[1], PROMPTS[0]], 2)  # same bucket (8)
    assert sampler.compiles == 1
    assert not np.array_equal(np.asarray(first.tokens[:2]), np.asarray(second.tokens[2:]))
    sampler.sample(params, [PROMPTS[2], PROMPTS[0]], 2)  # bucket 16
    assert sampler.compiles == 2
    sampler.sample(params, [PROMPTS[0], PROMPTS[2]], 2)
    assert sampler.compiles == 2


def test_stop_strings_end_rows_where_the_reference_says(qwen2, tmp_path):
    config, params, _ = qwen2
    tokenizer = load_tokenizer(build_tiny_tokenizer(tmp_path / "tok"))
    table = token_byte_table(tokenizer, config.vocab_size)
    key = jax.random.key(5)
    plain = GroupSampler(config, mesh_of((1, 1, 1)), _spec(Sampling(1.0), max_new=24, eos=()))
    free = plain.sample(params, PROMPTS, 2, key=key)
    # Stop strings taken from the middle of what the model generates freely, so that they
    # occur at known places whichever way the tokens split them.
    streams = [decode_bytes(table, np.asarray(free.tokens[r]).tolist()) for r in range(6)]
    stops = []
    for r in (0, 3):
        chunk = streams[r][6:10]
        if chunk and chunk.decode("utf-8", "ignore") == chunk.decode("utf-8", "replace"):
            stops.append(chunk.decode("utf-8"))
    stops = stops or ["e"]
    stop = StopStrings.build(stops, table)
    sampler = GroupSampler(
        config, mesh_of((1, 1, 1)), _spec(Sampling(1.0), max_new=24, eos=()), stop=stop
    )
    out = sampler.sample(params, PROMPTS, 2, key=key)
    hits = 0
    for r in range(6):
        ids = np.asarray(free.tokens[r]).tolist()
        index = first_stop_index(table, ids, stops)
        expected = 24 if index is None else index + 1
        hits += index is not None
        assert int(out.lengths[r]) == expected
        assert np.asarray(out.tokens[r, :expected]).tolist() == ids[:expected]
        assert bool(out.stopped[r]) == (index is not None)
    assert hits >= 1


def test_bad_prompts_raise_clear_errors(qwen2):
    config, params, _ = qwen2
    sampler = GroupSampler(config, mesh_of((1, 1, 1)), _spec(Greedy(), buckets=(8,)))
    with pytest.raises(SamplerError, match="longer than the largest prompt bucket"):
        sampler.sample(params, [list(range(1, 20))], 1)
    with pytest.raises(SamplerError, match="empty"):
        sampler.sample(params, [[]], 1)
    with pytest.raises(SamplerError, match="outside"):
        sampler.sample(params, [[1, 5000]], 1)
    with pytest.raises(SamplerError, match="no prompts"):
        sampler.sample(params, [], 1)
