"""Hugging Face checkpoint folder <-> our (sharded) parameter tree.

``load_hf_params`` builds every array directly in its final sharding: for each device shard
``jax.make_array_from_callback`` asks for an index, and we read just those layers and slices
from the memory-mapped safetensors files (see ``param_mapping`` for the layout views), cast
on the host to the requested dtype. Nothing is materialised whole on one device first.

``export_hf`` writes the reverse: safetensors (sharded with an index when large) plus
``config.json``, gathering one parameter at a time to the host. Its folder may be remote
(``gs://``): the files are written to a local temporary folder, then uploaded
(:func:`reczero_jax.paths.writing_to`). ``load_hf_params`` memory-maps local files: a remote
folder's safetensors files and index are first copied to a local temporary folder, once per
process (:func:`reczero_jax.paths.local_copy`).

Rule for a tied model (``tie_word_embeddings``) whose checkpoint still holds
``lm_head.weight``: it is ignored when bitwise equal to ``model.embed_tokens.weight``, and an
error otherwise. transformers 5 keeps a differing head untied (with a warning), so a tied
model of ours would silently compute other logits; set ``tie_word_embeddings=false``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from etils import epath

from reczero_jax import paths
from reczero_jax.hf import param_mapping as pm
from reczero_jax.hf import safetensors_io as st
from reczero_jax.model.model_config import ModelConfig
from reczero_jax.multihost import to_host

EXPORT_DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16)}
TOKENIZER_FILE_PATTERNS = (
    "tokenizer*.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
    "generation_config.json",
)
WEIGHT_FILE_PATTERNS = ("*.safetensors", "*.safetensors.index.json")
_MAX_LISTED_PROBLEMS = 10


class HFCheckpointError(ValueError):
    """A checkpoint that does not match the ModelConfig (names the tensor and what differs)."""


# ----------------------------------------------------------------------------- checks
def check_hf_dir(
    hf_dir: str | os.PathLike, key: str = "config.model.hf_dir", weights: bool = True
) -> None:
    """Raises HFCheckpointError, naming ``key``, the path and what was expected there, unless
    ``hf_dir`` (local or remote) is a folder holding ``config.json`` and, with ``weights``,
    ``model.safetensors`` or ``model.safetensors.index.json``. Reads only the listing."""
    folder = paths.as_path(hf_dir)
    expected = (
        f"expected a Hugging Face checkpoint folder: config.json with {st.SINGLE_FILE}, or "
        f"with {st.INDEX_FILE} and its shards"
    )
    if not folder.exists():
        raise HFCheckpointError(f"{key}: {hf_dir} does not exist ({expected})")
    if not folder.is_dir():
        raise HFCheckpointError(f"{key}: {hf_dir} is not a folder ({expected})")
    if not (folder / "config.json").is_file():
        raise HFCheckpointError(f"{key}: {hf_dir} holds no config.json ({expected})")
    if weights and not any((folder / n).is_file() for n in (st.SINGLE_FILE, st.INDEX_FILE)):
        raise HFCheckpointError(
            f"{key}: {hf_dir} holds neither {st.SINGLE_FILE} nor {st.INDEX_FILE} ({expected}; "
            "to start from an Orbax checkpoint set config.checkpoint.resume_from)"
        )


def open_checkpoint(hf_dir: str | os.PathLike) -> st.SafetensorsCheckpoint:
    """Opens the safetensors files of ``hf_dir`` (header only), with HFCheckpointError; a
    remote folder's weight files are copied locally first."""
    try:
        return st.SafetensorsCheckpoint(paths.local_copy(hf_dir, WEIGHT_FILE_PATTERNS))
    except (st.SafetensorsError, OSError) as e:
        raise HFCheckpointError(str(e)) from None


def check_checkpoint(ckpt: st.SafetensorsCheckpoint, config: ModelConfig) -> None:
    """Raises HFCheckpointError unless every expected tensor is present with its shape and
    every tensor present is used (or ignorable)."""
    expected = pm.expected_hf_tensors(config)
    problems = []
    for name, (row, _) in expected.items():
        want = list(row.hf_shape(config))
        if name not in ckpt:
            problems.append(f"{name}: missing (expected shape {want}) in {ckpt.folder}")
        elif list(ckpt[name].shape) != want:
            ref = ckpt[name]
            problems.append(
                f"{name}: expected shape {want}, found {list(ref.shape)} in {ref.file.name}"
            )
    for name, ref in ckpt.refs.items():
        if name in expected or pm.IGNORABLE_HF_TENSORS.search(name):
            continue
        if name == pm.LM_HEAD_HF_NAME and config.tie_word_embeddings:
            problems += _tied_head_problems(ckpt)  # module docstring
            continue
        problems.append(
            f"{name}: found in {ref.file.name} {list(ref.shape)} but unused by this "
            f"{config.model_type} config (unexpected tensor)"
        )
    if problems:
        more = len(problems) - _MAX_LISTED_PROBLEMS
        listed = problems[:_MAX_LISTED_PROBLEMS] + ([f"... and {more} more"] if more > 0 else [])
        raise HFCheckpointError(
            f"checkpoint {ckpt.folder} does not match the config:\n  " + "\n  ".join(listed)
        )


def _tied_head_problems(ckpt: st.SafetensorsCheckpoint, rows_per_chunk: int = 4096) -> list[str]:
    """[] when lm_head.weight equals the embedding bitwise (compared in row chunks)."""
    head, embed = ckpt[pm.LM_HEAD_HF_NAME], ckpt.refs.get("model.embed_tokens.weight")
    if embed is None or head.shape != embed.shape or head.dtype != embed.dtype:
        return [
            f"{head.name}: present in {head.file.name} although tie_word_embeddings is "
            "set, and not the same shape/dtype as model.embed_tokens.weight"
        ]
    head_a, embed_a = head.array(), embed.array()
    for start in range(0, head.shape[0], rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        if not np.array_equal(head_a[rows].view(np.uint8), embed_a[rows].view(np.uint8)):
            return [
                f"{head.name}: differs from model.embed_tokens.weight although "
                "tie_word_embeddings is set (transformers would use it untied); set "
                "tie_word_embeddings=false in config.json"
            ]
    return []


# ----------------------------------------------------------------------------- loading
def _flat_shardings(
    shardings: Any, config: ModelConfig
) -> dict[tuple[str, ...], jax.sharding.Sharding]:
    """One Sharding per expected path; ``None`` (whole tree or a leaf) -> first device."""
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    paths = list(pm.expected_params(config))
    if shardings is None:
        return dict.fromkeys(paths, default)
    if isinstance(shardings, jax.sharding.Sharding):
        return dict.fromkeys(paths, shardings)
    flat = pm.flatten(shardings)
    missing = [p for p in paths if p not in flat]
    extra = [p for p in flat if p not in set(paths)]
    if missing or extra:
        raise HFCheckpointError(
            "shardings tree does not match the parameter tree: "
            f"missing {['/'.join(p) for p in missing]}, extra {['/'.join(p) for p in extra]}"
        )
    return {p: default if flat[p] is None else flat[p] for p in paths}


def _read_slice(
    row: pm.ParamRow,
    refs: list[st.TensorRef],
    config: ModelConfig,
    index: tuple[slice, ...],
    dtype: np.dtype,
) -> np.ndarray:
    """Our array's ``index`` block, read from the memory-mapped HF tensors.

    For a stacked row ``index[0]`` selects layers; only those layers' files are touched.
    """
    if not row.stacked:
        view = row.to_ours(refs[0].array(), config)
        block = view[index]
        out = np.empty(block.shape, dtype)
        out[...] = block  # the read and the cast happen here
        return out
    layer_ids = range(config.num_layers)[index[0]]
    rest = index[1:]
    out = None
    for k, i in enumerate(layer_ids):
        block = row.to_ours(refs[i].array(), config)[rest]
        if out is None:
            out = np.empty((len(layer_ids), *block.shape), dtype)
        out[k] = block
    if out is None:  # empty layer range
        shape = row.our_shape(config)
        out = np.empty((0, *np.empty(shape[1:])[rest].shape), dtype)
    return out


def load_hf_params(
    hf_dir: str | os.PathLike,
    config: ModelConfig,
    shardings: Any = None,
    dtype: Any = jnp.float32,
) -> dict:
    """Loads a HF safetensors checkpoint into our parameter tree, already sharded.

    Args:
      hf_dir: folder with ``model.safetensors`` or ``model.safetensors.index.json`` + shards
        (local, or remote: copied to a local temporary folder first).
      config: the architecture (e.g. ``ModelConfig.from_hf_dir(hf_dir)``).
      shardings: a tree shaped like the params holding ``jax.sharding.Sharding`` leaves
        (``None`` leaves allowed), one Sharding for all, or None: everything on
        ``jax.devices()[0]``.
      dtype: dtype of the returned arrays (the cast happens on the host, per slice).

    Returns:
      The ``params`` collection, e.g. ``{'embed': {'embedding': [V, D]}, 'layers': {...}}``.

    Raises:
      HFCheckpointError: missing/extra/wrong-shape tensors (named), unreadable files.
    """
    ckpt = open_checkpoint(hf_dir)
    check_checkpoint(ckpt, config)
    flat_shardings = _flat_shardings(shardings, config)
    np_dtype = np.dtype(dtype)
    flat: dict[tuple[str, ...], jax.Array] = {}
    for row in pm.rows_for(config):
        refs = [ckpt[name] for name in row.hf_names(config)]

        def callback(index, row=row, refs=refs):
            return _read_slice(row, refs, config, index, np_dtype)

        try:
            flat[row.path] = jax.make_array_from_callback(
                row.our_shape(config), flat_shardings[row.path], callback
            )
        except (ValueError, TypeError) as e:
            raise HFCheckpointError(
                f"could not build {'/'.join(row.path)} {list(row.our_shape(config))} with "
                f"sharding {flat_shardings[row.path]}: {e}"
            ) from e
    return pm.nest(flat)


# ----------------------------------------------------------------------------- export
def _check_params(params: Mapping, config: ModelConfig) -> dict[tuple[str, ...], Any]:
    flat = pm.flatten(params)
    expected = pm.expected_params(config)
    problems = [f"{'/'.join(p)}: missing" for p in expected if p not in flat]
    problems += [
        f"{'/'.join(p)}: not a parameter of this config" for p in flat if p not in expected
    ]
    problems += [
        f"{'/'.join(p)}: shape {list(np.shape(flat[p]))}, expected {list(shape)}"
        for p, shape in expected.items()
        if p in flat and tuple(np.shape(flat[p])) != shape
    ]
    if problems:
        raise HFCheckpointError("params do not match the config: " + "; ".join(problems[:10]))
    return flat


def _export_specs(config: ModelConfig, dtype: np.dtype) -> list[st.TensorSpec]:
    """HF tensors in checkpoint order: embeddings, layer 0..L-1, final norm, head."""
    keyed = []
    for order, (name, (row, layer)) in enumerate(pm.expected_hf_tensors(config).items()):
        if layer is not None:
            group = layer
        else:  # embeddings first, final norm and head last
            group = -1 if row.path[0] == "embed" else config.num_layers
        keyed.append(((group, order), st.TensorSpec(name, row.hf_shape(config), dtype)))
    return [spec for _, spec in sorted(keyed, key=lambda kv: kv[0])]


def export_hf(
    params: Mapping,
    config: ModelConfig,
    out_dir: str | os.PathLike,
    dtype: str = "float32",
    tokenizer_dir: str | os.PathLike | None = None,
    max_shard_bytes: int = st.DEFAULT_MAX_SHARD_BYTES,
) -> pathlib.Path | epath.Path:
    """Writes ``params`` as a HF checkpoint ``AutoModelForCausalLM.from_pretrained`` loads.

    Args:
      params: our parameter tree (any sharding; gathered one parameter at a time).
      config: the architecture; ``config.json`` is ``config.to_hf_dict(dtype)``.
      out_dir: created if needed; local, or remote (written locally, then uploaded).
      dtype: 'float32' or 'bfloat16' for the stored tensors.
      tokenizer_dir: if given (local or remote), its tokenizer files are copied too.
      max_shard_bytes: above this total, shards ``model-0000k-of-0000n.safetensors`` + index.

    Every process must call this (gathers may be collective); only process 0 writes.
    Returns ``out_dir`` (a ``pathlib.Path``, or an ``epath.Path`` when remote).
    """
    if dtype not in EXPORT_DTYPES:
        raise HFCheckpointError(f"export dtype {dtype!r} is not one of {sorted(EXPORT_DTYPES)}")
    flat = _check_params(params, config)
    final = paths.as_path(out_dir) if paths.is_remote(out_dir) else pathlib.Path(out_dir)
    writing = jax.process_index() == 0
    with paths.writing_to(final) if writing else contextlib.nullcontext() as local:
        _write_export(flat, config, dtype, local, tokenizer_dir, max_shard_bytes)
    return final


def _write_export(
    flat: dict, config: ModelConfig, dtype: str, out_dir: pathlib.Path | None, tokenizer_dir,
    max_shard_bytes: int,
) -> None:  # fmt: skip
    """export_hf's work on every process; writes into the local ``out_dir`` unless None."""
    np_dtype = EXPORT_DTYPES[dtype]
    writing = out_dir is not None
    shards = st.plan_shards(_export_specs(config, np_dtype), max_shard_bytes)
    file_names = st.shard_file_names(len(shards))
    writers: dict[str, st.SafetensorsFileWriter] = {}
    if writing:
        out_dir.mkdir(parents=True, exist_ok=True)
        for file_name, shard in zip(file_names, shards):
            writer = st.SafetensorsFileWriter(out_dir / file_name, shard, {"format": "pt"})
            writers.update({spec.name: writer for spec in shard})
    for row in pm.rows_for(config):
        host = to_host(flat[row.path]).astype(np_dtype, copy=False)  # [L, ...] or [...]
        if not writing:
            continue
        for i, name in enumerate(row.hf_names(config)):
            writers[name].write(name, row.to_hf(host[i] if row.stacked else host, config))
        del host
    if not writing:
        return
    for writer in {id(w): w for w in writers.values()}.values():
        writer.close()
    if len(shards) > 1:
        st.write_index(out_dir, shards)
    hf_config = config.to_hf_dict(torch_dtype=dtype)
    (out_dir / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    if tokenizer_dir is not None:
        copy_tokenizer_files(tokenizer_dir, out_dir)


def copy_tokenizer_files(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Copies the tokenizer (and generation config) files of ``src`` (local or remote) into
    the local folder ``dst``."""
    if paths.is_remote(src):
        if not paths.as_path(src).is_dir():
            raise HFCheckpointError(f"tokenizer_dir {src} is not a folder")
        src = paths.local_copy(src, TOKENIZER_FILE_PATTERNS)
    src = pathlib.Path(src)
    if not src.is_dir():
        raise HFCheckpointError(f"tokenizer_dir {src} is not a folder")
    copied = []
    for pattern in TOKENIZER_FILE_PATTERNS:
        for path in sorted(src.glob(pattern)):
            shutil.copy2(path, pathlib.Path(dst) / path.name)
            copied.append(path.name)
    return copied
