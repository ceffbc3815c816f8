"""The one table that says how each of our parameters maps to a Hugging Face tensor.

Each row names our parameter (a path in the ``params`` tree), the HF tensor name (with
``{i}`` for the layer index of scanned layers), the axes of both as dimension names, and
when the row exists for a ``ModelConfig``. Axes are written with the symbols

    V vocab, D hidden, F intermediate, Hq query heads, Hkv kv heads, Dh head_dim

and ``A*B`` is one HF axis that holds ``A`` and ``B`` flattened (row-major). Our layout is
then a *view* of the HF tensor: reshape it to the split axes, transpose to our order. Both
are free on a memory-mapped array, so slicing the result reads only the bytes a device
needs. Rows with ``{i}`` are stacked: our array gets a leading ``L`` axis.

Example: ``q_proj.weight`` is ``[Hq*Dh, D]`` in HF; we keep ``[L, D, Hq, Dh]``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import numpy as np

from reczero_jax.model.model_config import ModelConfig

# HF tensors that carry no parameters of ours and may be dropped silently.
IGNORABLE_HF_TENSORS = re.compile(r"(^|\.)rotary_emb\.inv_freq$")
LM_HEAD_HF_NAME = "lm_head.weight"


@dataclasses.dataclass(frozen=True)
class ParamRow:
    """One parameter: our path, its HF name and the axis mapping between them.

    Attributes:
      name: our parameter's path in the ``params`` tree, '/'-separated
        ('layers/attn/q_proj/kernel'); ``path`` is the same as a tuple of keys.
      hf_name: HF tensor name; contains ``{i}`` for per-layer tensors (stacked on our side).
      hf_axes: HF axes, space separated; ``Hq*Dh`` is one flattened axis.
      our_axes: our axes (without the leading L of stacked rows), a permutation of the
        split HF axes.
      when: whether the row exists for a config.
    """

    name: str
    hf_name: str
    hf_axes: str
    our_axes: str
    when: Callable[[ModelConfig], bool] = lambda c: True

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.name.split("/"))

    @property
    def stacked(self) -> bool:
        return "{i}" in self.hf_name

    @property
    def _split_axes(self) -> list[str]:
        return [a for ax in self.hf_axes.split() for a in ax.split("*")]

    @property
    def perm(self) -> tuple[int, ...]:
        """Axes of the split HF view, in our order (``np.transpose`` argument)."""
        split = self._split_axes
        return tuple(split.index(a) for a in self.our_axes.split())

    def hf_shape(self, config: ModelConfig) -> tuple[int, ...]:
        dims = dims_of(config)
        return tuple(int(np.prod([dims[a] for a in ax.split("*")])) for ax in self.hf_axes.split())

    def view_shape(self, config: ModelConfig) -> tuple[int, ...]:
        dims = dims_of(config)
        return tuple(dims[a] for a in self._split_axes)

    def our_shape(self, config: ModelConfig) -> tuple[int, ...]:
        """Our full shape, with the leading L for stacked rows."""
        dims = dims_of(config)
        shape = tuple(dims[a] for a in self.our_axes.split())
        return (config.num_layers, *shape) if self.stacked else shape

    def hf_names(self, config: ModelConfig) -> list[str]:
        """The HF tensor names, one per layer for stacked rows."""
        if self.stacked:
            return [self.hf_name.format(i=i) for i in range(config.num_layers)]
        return [self.hf_name]

    def to_ours(self, hf_array: np.ndarray, config: ModelConfig) -> np.ndarray:
        """HF tensor (one layer) -> our layout, as a view (no copy, no read)."""
        return np.transpose(hf_array.reshape(self.view_shape(config)), self.perm)

    def to_hf(self, our_array: np.ndarray, config: ModelConfig) -> np.ndarray:
        """Our array (one layer) -> the HF tensor's layout."""
        inverse = tuple(int(k) for k in np.argsort(self.perm))
        return np.transpose(our_array, inverse).reshape(self.hf_shape(config))


def dims_of(config: ModelConfig) -> dict[str, int]:
    """Values of the axis symbols used in the table."""
    return {
        "V": config.vocab_size,
        "D": config.hidden_size,
        "F": config.intermediate_size,
        "Hq": config.num_heads,
        "Hkv": config.num_kv_heads,
        "Dh": config.head_dim,
    }


_L = "model.layers.{i}."
_A = _L + "self_attn."
_M = _L + "mlp."
_qkv_bias = lambda c: c.qkv_bias
_o_bias = lambda c: c.o_bias
_mlp_bias = lambda c: c.mlp_bias
_qk_norm = lambda c: c.qk_norm
_untied = lambda c: not c.tie_word_embeddings
_R = ParamRow

# fmt: off
PARAM_TABLE: tuple[ParamRow, ...] = (
    #  our path                     HF name                    HF axes     our axes    exists
    _R("embed/embedding",             "model.embed_tokens.weight", "V D",      "V D"),
    _R("layers/input_norm/scale",     _L + "input_layernorm.weight", "D",        "D"),
    _R("layers/attn/q_proj/kernel",   _A + "q_proj.weight",      "Hq*Dh D",  "D Hq Dh"),
    _R("layers/attn/q_proj/bias",     _A + "q_proj.bias",        "Hq*Dh",    "Hq Dh",    _qkv_bias),
    _R("layers/attn/k_proj/kernel",   _A + "k_proj.weight",      "Hkv*Dh D", "D Hkv Dh"),
    _R("layers/attn/k_proj/bias",     _A + "k_proj.bias",        "Hkv*Dh",   "Hkv Dh",   _qkv_bias),
    _R("layers/attn/v_proj/kernel",   _A + "v_proj.weight",      "Hkv*Dh D", "D Hkv Dh"),
    _R("layers/attn/v_proj/bias",     _A + "v_proj.bias",        "Hkv*Dh",   "Hkv Dh",   _qkv_bias),
    _R("layers/attn/o_proj/kernel",   _A + "o_proj.weight",      "D Hq*Dh",  "Hq Dh D"),
    _R("layers/attn/o_proj/bias",     _A + "o_proj.bias",        "D",        "D",        _o_bias),
    _R("layers/attn/q_norm/scale",    _A + "q_norm.weight",      "Dh",       "Dh",       _qk_norm),
    _R("layers/attn/k_norm/scale",    _A + "k_norm.weight",      "Dh",       "Dh",       _qk_norm),
    _R("layers/post_attn_norm/scale", _L + "post_attention_layernorm.weight", "D",        "D"),
    _R("layers/mlp/gate_proj/kernel", _M + "gate_proj.weight",   "F D",      "D F"),
    _R("layers/mlp/gate_proj/bias",   _M + "gate_proj.bias",     "F",        "F",        _mlp_bias),
    _R("layers/mlp/up_proj/kernel",   _M + "up_proj.weight",     "F D",      "D F"),
    _R("layers/mlp/up_proj/bias",     _M + "up_proj.bias",       "F",        "F",        _mlp_bias),
    _R("layers/mlp/down_proj/kernel", _M + "down_proj.weight",   "D F",      "F D"),
    _R("layers/mlp/down_proj/bias",   _M + "down_proj.bias",     "D",        "D",        _mlp_bias),
    _R("final_norm/scale",            "model.norm.weight",       "D",        "D"),
    _R("lm_head/kernel",              LM_HEAD_HF_NAME,           "V D",      "D V",      _untied),
)
# fmt: on


def rows_for(config: ModelConfig) -> list[ParamRow]:
    """The rows that exist for ``config``, in table order."""
    return [row for row in PARAM_TABLE if row.when(config)]


def expected_params(config: ModelConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Our parameter paths and full shapes (stacked rows with the leading L)."""
    return {row.path: row.our_shape(config) for row in rows_for(config)}


def expected_hf_tensors(config: ModelConfig) -> dict[str, tuple[ParamRow, int | None]]:
    """HF tensor name -> (row, layer index or None), for every tensor a checkpoint must hold."""
    out: dict[str, tuple[ParamRow, int | None]] = {}
    for row in rows_for(config):
        for i, name in enumerate(row.hf_names(config)):
            out[name] = (row, i if row.stacked else None)
    return out


def nest(flat: dict[tuple[str, ...], object]) -> dict:
    """{('a', 'b'): x} -> {'a': {'b': x}}."""
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def flatten(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """{'a': {'b': x}} -> {('a', 'b'): x} (inverse of ``nest``; any Mapping is a node)."""
    out: dict[tuple[str, ...], object] = {}
    for key, value in tree.items():
        if hasattr(value, "items"):
            out.update(flatten(value, (*prefix, str(key))))
        else:
            out[(*prefix, str(key))] = value
    return out
