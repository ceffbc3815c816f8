"""Prompt sets, their fixed random samples, and the batch order."""

import numpy as np

from reczero_jax.data.data_config import DataConfig, PromptConfig, SyntheticConfig
from reczero_jax.data.loader import load_data
from reczero_jax.data.prompt_set import PromptSet, batch_indices
from reczero_jax.text.tiny_tokenizer import build_tiny_tokenizer as build
from reczero_jax.text.tokenizer import load_tokenizer


def test_batch_indices_are_a_pure_function_of_seed_and_step():
    a = batch_indices(10, 4, 2, seed=3)
    assert np.array_equal(a, batch_indices(10, 4, 2, seed=3))
    epoch0 = np.concatenate([batch_indices(10, 5, s, seed=3) for s in (0, 1)])
    assert sorted(epoch0.tolist()) == list(range(10))  # one pass = a permutation
    assert not np.array_equal(batch_indices(10, 5, 0, seed=3), batch_indices(10, 5, 0, seed=4))


def test_a_sample_is_fixed_random_and_not_the_first_examples(tmp_path):
    data = load_data(DataConfig(synthetic=SyntheticConfig(num_users=80, num_items=30)))
    tokenizer = load_tokenizer(build(tmp_path / "tok"))
    cfg = PromptConfig(mode="raw", raw_template="{inputs}\n")
    full = PromptSet(data.examples["validation"], tokenizer, cfg)
    part = full.sample(20, seed=0)
    assert len(part) == 20 and part.sample(20, seed=5) is part
    keys = [(e.user_id, e.item_id) for e in full.examples]
    picked = [keys.index((e.user_id, e.item_id)) for e in part.examples]
    assert picked != list(range(20)) and len(set(picked)) == 20
    assert picked == [keys.index((e.user_id, e.item_id)) for e in full.sample(20, 0).examples]
    assert picked != [keys.index((e.user_id, e.item_id)) for e in full.sample(20, 1).examples]
    np.testing.assert_array_equal(part.targets_of(range(20)), full.targets_of(picked))
    np.testing.assert_array_equal(part.fallbacks_of(range(20)), full.fallbacks_of(picked))
    assert full.targets_of(picked).dtype == np.float32
    chosen = [data.examples["validation"][i] for i in picked]
    np.testing.assert_array_equal(
        full.targets_of(picked), np.asarray([e.rating for e in chosen], np.float32)
    )
    np.testing.assert_array_equal(
        full.fallbacks_of(picked), np.asarray([e.user_avg_rating for e in chosen], np.float32)
    )
    assert part.ids(3) == full.ids(picked[3])
    assert full.sample(0, 0) is full and full.sample(10_000, 0) is full
