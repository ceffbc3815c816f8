"""Stop-string detection: jitted ``update`` step by step vs the Python reference."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reczero_jax.text import (
    StopStrings,
    TokenBytes,
    decode_bytes,
    first_stop_index,
    init_window,
    update,
)
from tests.text.strategies import texts

STOPS = ("</rate>", "<|im_end|>")
STOPS_UNICODE = ("</rate>", "中文!")
ROWS = 4
STEPS = 48


@jax.jit
def _hits_scan(stop: StopStrings, ids_tn: jax.Array) -> jax.Array:
    """Per-step hits via lax.scan over [T, N] ids. bool [T, N]."""
    return jax.lax.scan(
        lambda window, ids_n: update(stop, window, ids_n),
        stop.init_window(ids_tn.shape[1]),
        ids_tn,
    )[1]


def _first_hits_scan(stop: StopStrings, ids_tn: jax.Array) -> jax.Array:
    """First hit step per row; -1 when none. int32 [N]."""
    hits_tn = _hits_scan(stop, ids_tn)
    first = jnp.argmax(hits_tn, axis=0).astype(jnp.int32)
    return jnp.where(hits_tn.any(axis=0), first, -1)


def _reference_hits(table: TokenBytes, ids: list[int], stops) -> list[bool]:
    """Step i hits iff some stop string occurrence ends inside token i's bytes."""
    patterns = [s.encode() for s in stops]
    stream, hits = b"", []
    for i in ids:
        start = len(stream)
        stream += decode_bytes(table, [i])
        ends_here = any(p in stream[max(0, start - len(p) + 1) :] for p in patterns)
        hits.append(len(stream) > start and ends_here)
    return hits


@jax.jit
def _first_hits_while(stop: StopStrings, ids_tn: jax.Array) -> jax.Array:
    """The same through lax.while_loop that stops once every row has hit."""
    num_steps, num_rows = ids_tn.shape

    def cond(state):
        t, _, done, _ = state
        return (t < num_steps) & ~jnp.all(done)

    def body(state):
        t, window, done, first = state
        window, hit = update(stop, window, ids_tn[t])
        first = jnp.where(hit & ~done, t, first)
        return t + 1, window, done | hit, first

    state = (
        jnp.int32(0),
        init_window(stop, num_rows),
        jnp.zeros((num_rows,), bool),
        jnp.full((num_rows,), -1, jnp.int32),
    )
    return jax.lax.while_loop(cond, body, state)[3]


def _pad_rows(rows: list[list[int]], pad_id: int) -> np.ndarray:
    out = np.full((STEPS, len(rows)), pad_id, dtype=np.int32)
    for n, row in enumerate(rows):
        row = row[:STEPS]
        out[: len(row), n] = row
    return out


def _check(table: TokenBytes, stops, rows: list[list[int]]) -> None:
    rows = [r[:STEPS] for r in rows] + [[] for _ in range(ROWS - len(rows))]
    pad_id = table.vocab_size - 1  # model-vocab padding: zero bytes
    assert table.lengths_v[pad_id] == 0
    stop = _built(table, stops)
    ids_tn = jnp.asarray(_pad_rows(rows, pad_id))
    expected = [first_stop_index(table, r, stops) for r in rows]
    expected = [-1 if e is None else e for e in expected]
    hits_tn = np.asarray(_hits_scan(stop, ids_tn))
    for n, row in enumerate(rows):
        assert hits_tn[: len(row), n].tolist() == _reference_hits(table, row, stops)
        assert not hits_tn[len(row) :, n].any()
    assert _first_hits_scan(stop, ids_tn).tolist() == expected
    assert _first_hits_while(stop, ids_tn).tolist() == expected


_BUILT: dict = {}


def _built(table: TokenBytes, stops) -> StopStrings:
    key = (id(table), tuple(stops))
    if key not in _BUILT:
        _BUILT[key] = StopStrings.build(stops, table)
    return _BUILT[key]


def _segmented(tok, text: str, cuts: list[int]) -> list[int]:
    """Encode ``text`` piece by piece at the given character cut points."""
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    ids: list[int] = []
    for a, b in zip(points, points[1:]):
        ids += tok.encode(text[a:b], add_special_tokens=False)
    return ids


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_update_matches_reference(tok_and_table, data):
    tok, table = tok_and_table
    stops = data.draw(st.sampled_from([STOPS, STOPS_UNICODE]))
    rows = []
    for _ in range(ROWS):
        text = data.draw(texts)
        kind = data.draw(st.sampled_from(["normal", "segmented", "chars"]))
        if kind == "normal":
            rows.append(tok.encode(text, add_special_tokens=False))
        elif kind == "segmented":
            cuts = data.draw(st.lists(st.integers(0, 200), max_size=10))
            rows.append(_segmented(tok, text, cuts))
        else:  # one character at a time
            rows.append(_segmented(tok, text, list(range(len(text)))))
    _check(table, stops, rows)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_update_matches_reference_random_ids(tok_and_table, data):
    """Arbitrary id sequences (partial UTF-8, padding ids) mixed with stop-string pieces."""
    tok, table = tok_and_table
    pieces = [i for s in ("</rate>", "<|im_end|>", "中文!") for i in tok.encode(s)]
    id_strategy = st.one_of(
        st.integers(0, table.vocab_size - 1), st.sampled_from(pieces), st.just(-1)
    )
    rows = [data.draw(st.lists(id_strategy, max_size=STEPS)) for _ in range(ROWS)]
    _check(table, data.draw(st.sampled_from([STOPS, STOPS_UNICODE])), rows)


def test_no_stop_strings_never_hit(tiny_table, tiny_tokenizer):
    stop = StopStrings.build([], tiny_table)
    assert stop.patterns_sk.shape == (0, 1)
    assert stop.window_size == tiny_table.max_token_bytes
    ids = tiny_tokenizer.encode("<rate>4</rate><|im_end|>")
    assert first_stop_index(tiny_table, ids, []) is None
    assert _first_hits_scan(stop, jnp.asarray(_pad_rows([ids] * ROWS, 1023))).tolist() == [-1] * 4


def test_bad_stop_strings(tiny_table):
    with pytest.raises(ValueError, match="empty"):
        StopStrings.build(["</rate>", ""], tiny_table)
    with pytest.raises(TypeError, match="sequence of str"):
        StopStrings.build("</rate>", tiny_table)
    stop = StopStrings.build(["</rate>"], tiny_table)
    with pytest.raises(ValueError, match="init_window"):
        update(stop, jnp.full((2, 3), -1, jnp.int32), jnp.zeros((2,), jnp.int32))


def test_window_keeps_last_bytes(tiny_tokenizer, tiny_table):
    stop = StopStrings.build(["</rate>"], tiny_table)
    assert stop.window_size == 6 + tiny_table.max_token_bytes
    ids = tiny_tokenizer.encode("The user liked the movie. " * 3)
    step = jax.jit(update)
    window = stop.init_window(1)
    for i in ids:
        window, hit = step(stop, window, jnp.asarray([i], jnp.int32))
        assert not bool(hit[0])
    stream = decode_bytes(tiny_table, ids)
    got = np.asarray(window[0])
    assert bytes(got[got >= 0].astype(np.uint8).tolist()) == stream[-stop.window_size :]


def test_qwen_rate_tag_pieces(qwen_tokenizer, qwen_table):
    tok = qwen_tokenizer
    assert tok.convert_ids_to_tokens(tok.encode("</rate>")) == ["</", "rate", ">"]
    assert tok.convert_ids_to_tokens(tok.encode("<rate>")) == ["<", "rate", ">"]
    assert tok.convert_ids_to_tokens(tok.encode("</rate>\n")) == ["</", "rate", ">Ċ"]
    for merged in (">\n", ">\n\n"):
        (single,) = tok.encode(merged)
        assert qwen_table.token_bytes(single) == merged.encode()

    text = "<rate>4</rate>\n<|im_end|>"
    ids = tok.encode(text)
    assert tok.convert_ids_to_tokens(ids) == [
        "<",
        "rate",
        ">",
        "4",
        "</",
        "rate",
        ">Ċ",
        "<|im_end|>",
    ]
    # </rate> ends inside the '>\n' token (index 6): detected there, not before.
    assert first_stop_index(qwen_table, ids, ["</rate>"]) == 6
    assert first_stop_index(qwen_table, ids, ["<|im_end|>"]) == 7
    assert first_stop_index(qwen_table, ids, ["<rate>"]) == 2
    _check(qwen_table, STOPS, [ids, ids[:6], tok.encode("</rate>"), tok.encode("x</rat")])
    stop = _built(qwen_table, STOPS)
    got = _first_hits_scan(stop, jnp.asarray(_pad_rows([ids, tok.encode("</rate>")], 151935)))
    assert got.tolist() == [6, 2]


@functools.cache
def _tiny_ids(tok, text):
    return tuple(tok.encode(text))


def test_tiny_rate_tag_split(tiny_tokenizer, tiny_table):
    tok = tiny_tokenizer
    ids = list(_tiny_ids(tok, "<rate>4.5</rate>\nok"))
    pieces = tok.convert_ids_to_tokens(ids)
    end = pieces.index(">Ċ")
    assert first_stop_index(tiny_table, ids, ["</rate>"]) == end
    _check(tiny_table, STOPS, [ids])
