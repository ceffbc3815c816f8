"""The group sampler against full forwards, transformers' generate, and itself."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import torch
import transformers

from reczero_jax import sharding
from reczero_jax.model import compute_logits
from reczero_jax.sampling.methods import Greedy, Sampling
from reczero_jax.sampling.sampler import GroupSampler, SamplerError, SamplerSpec
from reczero_jax.text.stop_strings import StopStrings, first_stop_index
from reczero_jax.text.token_bytes import decode_bytes, token_byte_table
from reczero_jax.text.tokenizer import load_tokenizer
from tests.fixtures.tokenizer import build_tiny_tokenizer
from tests.sampling.conftest import load_on, mesh_of

PROMPTS = [[5, 17, 300, 42, 9, 77], [11, 12, 13], list(range(100, 113))]


def _spec(method, max_new=12, eos=(2,), buckets=(8, 16, 32), unroll=None):
    """The spec with the sampler's defaults (on CPU: unrolled, 4 cache phases) unless
    ``unroll`` picks the decode loop."""
    return SamplerSpec(
        max_new_tokens=max_new,
        method=method,
        eos_ids=eos,
        pad_id=0,
        buckets=buckets,
        unroll_layers=unroll,
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


@pytest.mark.parametrize("temperature, unroll", [(1.0, None), (0.7, None), (1.0, False)])
def test_logprobs_equal_full_forward(qwen2, temperature, unroll):
    config, params, _ = qwen2
    spec = _spec(Sampling(temperature), unroll=unroll)
    sampler = GroupSampler(config, mesh_of((1, 1, 1)), spec)
    out = sampler.sample(params, PROMPTS, 3, key=jax.random.key(3))
    tokens, logprobs, lengths = map(np.asarray, (out.tokens, out.logprobs, out.lengths))
    stopped = np.asarray(out.stopped)
    assert tokens.shape == (3, 3, 12) and tokens.dtype == np.int32
    assert logprobs.shape == (3, 3, 12) and logprobs.dtype == np.float32
    assert lengths.shape == (3, 3) and lengths.dtype == np.int32
    assert stopped.shape == (3, 3) and stopped.dtype == bool
    pairs = [(b, g) for b in range(3) for g in range(3)]
    refs = _full_logprobs(
        config,
        params,
        [PROMPTS[b] for b, _ in pairs],
        [tokens[b, g, : lengths[b, g]] for b, g in pairs],
        temperature,
    )
    for (b, g), ref in zip(pairs, refs):
        n = lengths[b, g]
        np.testing.assert_allclose(logprobs[b, g, :n], ref, atol=2e-5)
        assert np.all(logprobs[b, g, n:] == 0) and np.all(tokens[b, g, n:] == 0)
        assert stopped[b, g] == (n < 12 or tokens[b, g, n - 1] == 2)


@pytest.mark.parametrize("unroll", [None, False])
def test_greedy_equals_transformers_generate(qwen2, unroll):
    config, params, hf_dir = qwen2
    spec = _spec(Greedy(), max_new=10, unroll=unroll)
    sampler = GroupSampler(config, mesh_of((1, 1, 1)), spec)
    out = sampler.sample(params, PROMPTS, 1)
    assert out.tokens.shape == (3, 1, 10) and out.lengths.shape == (3, 1)
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
        n = int(out.lengths[row, 0])
        assert np.asarray(out.tokens[row, 0, :n]).tolist() == ref


def test_group_shares_one_prefill(qwen2):
    """G samples of one prefilled prompt == G separate prefills of the same prompt."""
    config, params, _ = qwen2
    sampler = GroupSampler(config, mesh_of((1, 1, 1)), _spec(Sampling(1.0)))
    key = jax.random.key(7)
    shared = sampler.sample(params, [PROMPTS[0]], 4, key=key)  # [1, 4, T]
    separate = sampler.sample(params, [PROMPTS[0]] * 4, 1, key=key)  # [4, 1, T]
    assert shared.tokens.shape == (1, 4, 12) and separate.tokens.shape == (4, 1, 12)
    np.testing.assert_array_equal(np.asarray(shared.tokens[0]), np.asarray(separate.tokens[:, 0]))
    np.testing.assert_array_equal(np.asarray(shared.lengths[0]), np.asarray(separate.lengths[:, 0]))
    np.testing.assert_allclose(
        np.asarray(shared.logprobs[0]), np.asarray(separate.logprobs[:, 0]), atol=1e-5
    )
    assert len(set(map(tuple, np.asarray(shared.tokens[0]).tolist()))) > 1  # really sampled


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
    # 3 prompts on 4 or 8 batch shards: the padded rows are dropped.
    assert out.tokens.shape == ref.tokens.shape == (3, 4, 12)
    assert out.prompt.shape == ref.prompt.shape == (3, 16)
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ref.tokens))
    np.testing.assert_array_equal(np.asarray(out.lengths), np.asarray(ref.lengths))
    np.testing.assert_array_equal(np.asarray(out.stopped), np.asarray(ref.stopped))
    np.testing.assert_array_equal(np.asarray(out.prompt), np.asarray(ref.prompt))
    np.testing.assert_array_equal(np.asarray(out.prompt_valid), np.asarray(ref.prompt_valid))
    np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(ref.logprobs), atol=1e-5)


@pytest.mark.parametrize("mesh_shape", [(1, 1, 1), (2, 2, 2)])
def test_unrolled_decode_equals_scanned(qwen2, mesh_shape):
    """``SamplerSpec.unroll_layers`` changes how the decode step loops over the layers,
    not what it computes: the same tokens, lengths and log-probs."""
    config, params, hf_dir = qwen2
    mesh = mesh_of(mesh_shape)
    if mesh_shape != (1, 1, 1):
        params = load_on(mesh, config, hf_dir)
    key = jax.random.key(5)
    scan_spec = _spec(Sampling(1.0), unroll=False)
    scanned = GroupSampler(config, mesh, scan_spec).sample(params, PROMPTS, 3, key=key)
    spec = _spec(Sampling(1.0), unroll=True)
    unrolled = GroupSampler(config, mesh, spec).sample(params, PROMPTS, 3, key=key)
    np.testing.assert_array_equal(np.asarray(unrolled.tokens), np.asarray(scanned.tokens))
    np.testing.assert_array_equal(np.asarray(unrolled.lengths), np.asarray(scanned.lengths))
    np.testing.assert_allclose(
        np.asarray(unrolled.logprobs), np.asarray(scanned.logprobs), atol=1e-5
    )
    # ... and the setting reaches the decode step: its loop over the layers is gone.
    tokens, valid = GroupSampler(config, mesh, spec).pad_prompts(PROMPTS)

    def loops(s):
        lowered = GroupSampler(config, mesh, s).lower(params, tokens, valid, key, 3)
        return lowered.as_text().count("stablehlo.while")

    # one loop over the layers inside each of the 4 cache phases' decode loops
    assert loops(spec) == loops(scan_spec) - 4


def test_unrolled_decode_updates_its_caches_in_place(qwen2):
    """The unrolled decode step writes each layer's token before it attends, so XLA
    updates the per-layer caches in place: the compiled sampler copies a cache-shaped
    buffer at most once per cache (their zero initial values), not at every step (a
    layer that read its cache before the caller wrote the token got every cache copied
    twice per step: 3 * 2L copies in the program, measured)."""
    config, params, _ = qwen2
    spec = _spec(Sampling(1.0), unroll=True)
    sampler = GroupSampler(config, mesh_of((1, 1, 1)), spec)
    tokens, valid = sampler.pad_prompts(PROMPTS)
    text = sampler.lower(params, tokens, valid, jax.random.key(0), 3).compile().as_text()
    lead = f"f32[{len(PROMPTS)},3,{config.num_kv_heads}"
    shapes = (f"{lead},{config.head_dim},12]", f"{lead},12,{config.head_dim}]")  # keys, values
    copies = [
        line
        for line in text.splitlines()
        if any(f"= {shape}" in line for shape in shapes) and " copy(" in line
    ]
    assert len(copies) <= 2 * config.num_layers, copies


def test_phase_cache_lengths():
    from reczero_jax.sampling.sampler import phase_cache_lengths

    assert phase_cache_lengths(12, 1) == [12]
    assert phase_cache_lengths(12, 3) == [4, 8, 12]
    assert phase_cache_lengths(10, 3) == [4, 8, 10]
    assert phase_cache_lengths(3, 8) == [1, 2, 3]
    assert phase_cache_lengths(1, 4) == [1]
    with pytest.raises(SamplerError, match="cache_phases"):
        dataclasses.replace(_spec(Sampling(1.0)), cache_phases=0)


@pytest.mark.parametrize(
    "mesh_shape, unroll", [((1, 1, 1), False), ((1, 1, 1), True), ((2, 2, 2), True)]
)
def test_cache_phases_sample_what_one_loop_samples(qwen2, mesh_shape, unroll):
    """``cache_phases`` splits the decode loop over a growing cache; it does not change
    what is sampled: the same tokens, lengths and stops and the same log-probs, for 12
    new tokens in 3 and 12 loops (EOS ends rows in different loops), and for 1 new token
    (a loop with no steps)."""
    config, params, hf_dir = qwen2
    mesh = mesh_of(mesh_shape)
    if mesh_shape != (1, 1, 1):
        params = load_on(mesh, config, hf_dir)
    key = jax.random.key(9)
    for max_new in (12, 1):
        eos = tuple(range(3, 80))  # about one token in twelve ends an answer
        spec = _spec(Sampling(1.0), max_new=max_new, eos=eos)
        base = dataclasses.replace(spec, unroll_layers=unroll, cache_phases=1)
        ref = GroupSampler(config, mesh, base).sample(params, PROMPTS, 3, key=key)
        if max_new == 12:  # rows end in different loops of 4 and of 1 step
            assert len(set(np.asarray(ref.lengths).ravel().tolist())) >= 3
        for phases in (3, 12):
            spec = dataclasses.replace(base, cache_phases=phases)
            out = GroupSampler(config, mesh, spec).sample(params, PROMPTS, 3, key=key)
            for field in ("tokens", "lengths", "stopped"):
                np.testing.assert_array_equal(
                    np.asarray(getattr(out, field)), np.asarray(getattr(ref, field))
                )
            np.testing.assert_allclose(
                np.asarray(out.logprobs), np.asarray(ref.logprobs), atol=1e-6
            )


def test_sampling_section_sets_the_decode_loop():
    from reczero_jax.engine import sampler_spec
    from reczero_jax.settings import SamplingSettings

    def spec(**kw):
        return sampler_spec(SamplingSettings(**kw), (2,), 0)

    assert spec(decode_loop="unrolled").unroll_layers is True
    assert spec(decode_loop="scanned").unroll_layers is False
    assert spec().unroll_layers is None  # 'auto': the sampler decides by its platform
    assert spec().cache_phases == 4
    assert spec(cache_phases=1).cache_phases == 1


def test_the_decode_loop_left_open_is_unrolled_on_cpu_only(qwen2):
    from reczero_jax.sampling.sampler import unroll_by_default, unrolls

    config, _, _ = qwen2
    sampler = GroupSampler(config, mesh_of((1, 1, 1)), _spec(Sampling(1.0)))
    assert jax.devices()[0].platform == "cpu" and sampler.spec.unroll_layers is True
    assert [unroll_by_default(p) for p in ("cpu", "gpu", "tpu")] == [True, False, False]
    assert unrolls("auto", "tpu") is False and unrolls("unrolled", "tpu") is True
    assert unrolls("scanned", "cpu") is False and unrolls("auto", "cpu") is True
    scanned = GroupSampler(config, mesh_of((1, 1, 1)), _spec(Sampling(1.0), unroll=False))
    assert scanned.spec.unroll_layers is False


def test_compiles_once_per_bucket_and_keys_change(qwen2):
    config, params, _ = qwen2
    sampler = GroupSampler(config, mesh_of((1, 1, 1)), _spec(Sampling(1.0)))
    first = sampler.sample(params, [PROMPTS[0], PROMPTS[1]], 2)
    second = sampler.sample(params, [PROMPTS[1], PROMPTS[0]], 2)  # same bucket (8)
    assert sampler.compiles == 1
    assert first.tokens.shape == second.tokens.shape == (2, 2, 12)
    # Prompt 0 is first in one call and second in the other: fresh keys, other samples.
    assert not np.array_equal(np.asarray(first.tokens[0]), np.asarray(second.tokens[1]))
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
    pairs = [(b, g) for b in range(3) for g in range(2)]
    streams = {bg: decode_bytes(table, np.asarray(free.tokens[bg]).tolist()) for bg in pairs}
    stops = []
    for bg in ((0, 0), (1, 1)):
        chunk = streams[bg][6:10]
        if chunk and chunk.decode("utf-8", "ignore") == chunk.decode("utf-8", "replace"):
            stops.append(chunk.decode("utf-8"))
    stops = stops or ["e"]
    stop = StopStrings.build(stops, table)
    sampler = GroupSampler(
        config, mesh_of((1, 1, 1)), _spec(Sampling(1.0), max_new=24, eos=()), stop=stop
    )
    out = sampler.sample(params, PROMPTS, 2, key=key)
    assert out.tokens.shape == (3, 2, 24) and out.stopped.shape == (3, 2)
    hits = 0
    for b, g in pairs:
        ids = np.asarray(free.tokens[b, g]).tolist()
        index = first_stop_index(table, ids, stops)
        expected = 24 if index is None else index + 1
        hits += index is not None
        assert int(out.lengths[b, g]) == expected
        assert np.asarray(out.tokens[b, g, :expected]).tolist() == ids[:expected]
        assert bool(out.stopped[b, g]) == (index is not None)
    assert hits >= 1


def test_groups_and_padded_prompts(qwen2):
    """out.prompt is the left-padded bucket the prefill read; tokens[b, g] is sample g of b.

    4 prompts on a (2, 2, 2) mesh (4 batch shards: no batch padding), so every output stays
    sharded along B. Greedy decoding makes all G samples of a prompt equal, and equal to a
    1-sample call.
    """
    config, hf_dir = qwen2[0], qwen2[2]
    mesh = mesh_of((2, 2, 2))
    params = load_on(mesh, config, hf_dir)
    sampler = GroupSampler(config, mesh, _spec(Greedy(), max_new=10))
    prompts = [PROMPTS[2], PROMPTS[1], PROMPTS[0], [7]]
    out = sampler.sample(params, prompts, 3)
    one = sampler.sample(params, prompts, 1)

    assert out.prompt.shape == (4, 16) and out.prompt.dtype == np.int32  # bucket 16 holds 13
    assert out.prompt_valid.shape == (4, 16) and out.prompt_valid.dtype == bool
    prompt, valid = np.asarray(out.prompt), np.asarray(out.prompt_valid)
    for b, ids in enumerate(prompts):
        assert prompt[b].tolist() == [0] * (16 - len(ids)) + ids
        assert valid[b].tolist() == [False] * (16 - len(ids)) + [True] * len(ids)
    np.testing.assert_array_equal(np.asarray(one.prompt), prompt)
    np.testing.assert_array_equal(np.asarray(one.prompt_valid), valid)
    ref_prompt, ref_valid = sampler.pad_prompts(prompts)
    np.testing.assert_array_equal(prompt, ref_prompt)
    np.testing.assert_array_equal(valid, ref_valid)

    assert out.tokens.shape == (4, 3, 10) and one.tokens.shape == (4, 1, 10)
    row_spec = jax.sharding.PartitionSpec(sharding.BATCH_AXES)
    for name in ("tokens", "logprobs", "lengths", "stopped", "prompt", "prompt_valid"):
        assert getattr(out, name).sharding.spec == row_spec, name
    tokens = np.asarray(out.tokens)
    np.testing.assert_array_equal(tokens, np.repeat(np.asarray(one.tokens), 3, axis=1))
    np.testing.assert_array_equal(
        np.asarray(out.lengths), np.repeat(np.asarray(one.lengths), 3, axis=1)
    )
    np.testing.assert_allclose(
        np.asarray(out.logprobs), np.repeat(np.asarray(one.logprobs), 3, axis=1), atol=1e-5
    )
    assert len({tuple(tokens[b, 0]) for b in range(4)}) > 1  # prompts are not mixed up
    refs = _full_logprobs(
        config,
        qwen2[1],
        prompts,
        [tokens[b, 0, : int(out.lengths[b, 0])] for b in range(4)],
    )
    for b in range(4):
        n = int(out.lengths[b, 0])
        np.testing.assert_allclose(np.asarray(out.logprobs[b, 0, :n]), refs[b], atol=2e-5)


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
