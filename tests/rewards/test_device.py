"""Device-specific behaviour: byte stream compaction, overflow, jit-compatibility, memory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reczero_jax.rewards import (
    ByteTable,
    RewardSpec,
    byte_stream,
    compute_rewards,
    parse,
)
from reczero_jax.text import decode_bytes
from tests.rewards.scorer import ROWS, TOKENS

ANSWER = (
    "<analyze user>u</analyze user><analyze item>i</analyze item><match>m</match><rate>4</rate>"
)


def test_byte_stream_is_the_decoded_bytes(tiny):
    texts = [ANSWER, "中文 😀 é", "", "<|im_end|>x"]
    rows = [tiny.encode(t) for t in texts]
    tokens = np.zeros((len(rows), 48), np.int32)
    for n, r in enumerate(rows):
        tokens[n, : len(r)] = r
    lengths = np.array([len(r) for r in rows], np.int32)
    stream_fn = jax.jit(byte_stream, static_argnums=3)
    stream, total = stream_fn(tiny.device_table, jnp.asarray(tokens), jnp.asarray(lengths), 64)
    for n, r in enumerate(rows):
        want = decode_bytes(tiny.table, r)
        assert int(total[n]) == len(want)
        got = np.asarray(stream[n])
        assert bytes(got[got >= 0].astype(np.uint8).tolist()) == want[:64]
        assert (got[len(want) :] == -1).all()


def test_overflow_matches_reference_cap(tiny):
    cap = 200
    spec = RewardSpec(max_bytes=cap)
    rows, texts = [], []
    for size in (cap - 1, cap, cap + 1, cap + 40):
        text = (ANSWER + " The user liked the movie." * 20)[:size]
        texts.append(text)
        rows.append(tiny.encode(text))
    got = tiny.score(rows, [4.0] * len(rows), spec)
    assert [g["overflow"] for g in got] == [False, False, True, True]
    assert [g["valid"] for g in got] == [True, True, False, False]
    assert [g["reason"] for g in got] == ["ok", "ok", "overflow", "overflow"]
    assert [g["reward"] for g in got] == [1.5, 1.5, -0.5, -0.5]
    assert [parse(t, max_bytes=cap).reason for t in texts] == ["ok", "ok", "overflow", "overflow"]
    assert parse(texts[-1]).valid  # no cap: valid


def test_default_capacity_is_8_per_token():
    assert RewardSpec().capacity(128) == 1024
    assert RewardSpec(max_bytes=77).capacity(128) == 77


def test_inside_user_jit_and_no_token_by_byte_array(tiny):
    """compute_rewards traces inside a caller's jit; no [N, T, M] intermediate appears."""
    spec = RewardSpec()
    table = tiny.device_table

    def step(table, tokens, lengths, targets):
        return compute_rewards(table, tokens, lengths, targets, spec).reward.mean()

    args = (
        table,
        jnp.zeros((ROWS, TOKENS), jnp.int32),
        jnp.zeros((ROWS,), jnp.int32),
        jnp.zeros((ROWS,), jnp.float32),
    )
    jaxpr = jax.make_jaxpr(step)(*args)
    shapes = set()

    def walk(jpr):
        for eqn in jpr.eqns:
            shapes.update(tuple(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape"))
            for p in eqn.params.values():
                if hasattr(p, "jaxpr"):
                    walk(p.jaxpr)

    walk(jaxpr.jaxpr)
    assert (ROWS, TOKENS) in shapes and (ROWS, 8 * TOKENS) in shapes  # the walk saw the body
    # [N, T, 2] scatter indices are fine; [N, T, M] gathered bytes are not.
    assert not any(len(s) == 3 and s[:2] == (ROWS, TOKENS) and s[2] > 2 for s in shapes), shapes


def test_group_shape_equals_flat_rows(tiny):
    """tokens [B, G, T] with lengths / targets [B, G] == the flat [B*G, T] call, reshaped.

    Eager and inside a caller's jit; 1-D batch [N, T] keeps working (the Scorer uses it).
    """
    b, g = 2, 4
    texts = [
        ANSWER,
        ANSWER.replace("4", "2.5"),
        ANSWER.replace("<match>m</match>", ""),
        "no tags at all",
        ANSWER.replace("4", "5.5"),
        "",
        ANSWER.replace("4", "3.25"),
        ANSWER + ANSWER,
    ]
    rows = [tiny.encode(t) for t in texts]
    tokens = np.zeros((b * g, TOKENS), np.int32)
    for n, r in enumerate(rows):
        tokens[n, : len(r)] = r
    lengths = np.array([len(r) for r in rows], np.int32)
    targets = np.array([4.0, 3.0, 2.0, 1.0, 5.0, 3.0, 3.5, 4.0], np.float32)
    spec = RewardSpec()
    table = tiny.device_table
    flat = compute_rewards(
        table, jnp.asarray(tokens), jnp.asarray(lengths), jnp.asarray(targets), spec
    )
    assert flat.reward.shape == (b * g,)
    assert np.asarray(flat.valid).tolist().count(True) >= 3  # a mix of valid and invalid
    assert len(set(np.asarray(flat.reason).tolist())) >= 3
    grouped_args = (
        table,
        jnp.asarray(tokens.reshape(b, g, TOKENS)),
        jnp.asarray(lengths.reshape(b, g)),
        jnp.asarray(targets.reshape(b, g)),
    )
    eager = compute_rewards(*grouped_args, spec)
    jitted = jax.jit(lambda *a: compute_rewards(*a, spec))(*grouped_args)
    for out in (eager, jitted):
        for name in ("valid", "rating", "reward", "overflow", "reason"):
            got, want = getattr(out, name), getattr(flat, name)
            assert got.shape == (b, g), name
            assert got.dtype == want.dtype, name
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want).reshape(b, g))
    # A deeper batch shape works too: [2, 2, 2, T].
    deep = compute_rewards(
        table,
        jnp.asarray(tokens.reshape(2, 2, 2, TOKENS)),
        jnp.asarray(lengths.reshape(2, 2, 2)),
        jnp.asarray(targets.reshape(2, 2, 2)),
        spec,
    )
    np.testing.assert_array_equal(np.asarray(deep.reward), np.asarray(flat.reward).reshape(2, 2, 2))


def test_bad_inputs(tiny):
    table = tiny.device_table
    with pytest.raises(TypeError, match="RewardSpec"):
        compute_rewards(table, jnp.zeros((2, 4), jnp.int32), jnp.zeros(2), jnp.zeros(2), "paper")
    with pytest.raises(ValueError, match=r"\[\.\.\., T\] with at least one batch dimension"):
        compute_rewards(table, jnp.zeros((4,), jnp.int32), jnp.zeros(2), jnp.zeros(2))
    with pytest.raises(ValueError, match=r"batch shape tokens.shape\[:-1\] = \(2,\)"):
        compute_rewards(table, jnp.zeros((2, 4), jnp.int32), jnp.zeros(3), jnp.zeros(2))
    with pytest.raises(ValueError, match=r"batch shape tokens.shape\[:-1\] = \(2, 3\)"):
        compute_rewards(table, jnp.zeros((2, 3, 4), jnp.int32), jnp.zeros(6), jnp.zeros(6))
    with pytest.raises(ValueError, match=r"batch shape"):
        compute_rewards(table, jnp.zeros((2, 3, 4), jnp.int32), jnp.zeros((2, 3)), jnp.zeros(6))
    with pytest.raises(TypeError, match="TokenBytes"):
        ByteTable.build(np.zeros((3, 3)))
