"""Loading HF checkpoints (1 device and sharded on 8), errors, and export round trips."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reczero_jax.hf import checkpoint as ck
from reczero_jax.hf import param_mapping as pm
from reczero_jax.hf import safetensors_io as st
from reczero_jax.model.decoder import compute_logits
from reczero_jax.model.model_config import ModelConfig
from reczero_jax.tools.hf_parity import hf_logits, make_batch, max_diff
from tests.fixtures.hf_models import TINY_KINDS

TOL = 1e-4
MESH_AXIS_OF = {"D": "fsdp", "Hq": "tensor", "Hkv": "tensor", "F": "tensor", "V": "tensor"}


@pytest.fixture(scope="module")
def batch():
    return make_batch(1024, batch=2, length=12, seed=0)


@pytest.fixture(scope="module")
def reference(tiny_hf_dir, batch):
    """``reference(kind)`` -> (config, transformers float32 logits [B, T, V]), cached."""
    cache = {}

    def get(kind):
        if kind not in cache:
            folder = tiny_hf_dir(kind)
            cache[kind] = (ModelConfig.from_hf_dir(folder), hf_logits(folder, "float32", *batch))
        return cache[kind]

    return get


@pytest.fixture(scope="module")
def mesh():
    return Mesh(np.array(jax.devices()).reshape(2, 2, 2), ("data", "fsdp", "tensor"))


def mesh_shardings(config: ModelConfig, mesh: Mesh) -> dict:
    """Layers over 'data', D over 'fsdp', heads/F/V over 'tensor' (where they divide)."""
    dims = pm.dims_of(config)
    out = {}
    for row in pm.rows_for(config):
        spec = [MESH_AXIS_OF.get(a) for a in row.our_axes.split()]
        spec = [
            ax if ax and dims[a] % mesh.shape[ax] == 0 else None
            for ax, a in zip(spec, row.our_axes.split())
        ]
        if row.stacked:
            spec = ["data" if config.num_layers % mesh.shape["data"] == 0 else None, *spec]
        out[row.path] = NamedSharding(mesh, PartitionSpec(*spec))
    return pm.nest(out)


def _logits(config, params, batch):
    tokens, mask = batch
    return np.asarray(compute_logits(config, params, tokens, mask))


@pytest.mark.parametrize("kind", [*TINY_KINDS, "llama_sharded"])
def test_logits_match_transformers_one_device(kind, tiny_hf_dir, reference, batch):
    config, ref = reference(kind)
    params = ck.load_hf_params(tiny_hf_dir(kind), config)
    leaf = params["layers"]["attn"]["q_proj"]["kernel"]
    assert leaf.dtype == jnp.float32 and leaf.sharding.device_set == {jax.devices()[0]}
    diff = max_diff(_logits(config, params, batch), ref, batch[1])
    print(f"{kind}: max |logit diff| = {diff:.2e}")
    assert diff <= TOL


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_sharded_load_matches_unsharded(kind, tiny_hf_dir, reference, batch, mesh):
    config, ref = reference(kind)
    shardings = mesh_shardings(config, mesh)
    sharded = ck.load_hf_params(tiny_hf_dir(kind), config, shardings=shardings)
    single = ck.load_hf_params(tiny_hf_dir(kind), config)
    for path, arr in pm.flatten(sharded).items():
        want = pm.flatten(shardings)[path]
        assert arr.sharding == want, path
        np.testing.assert_array_equal(np.asarray(arr), np.asarray(pm.flatten(single)[path]))
    q = sharded["layers"]["attn"]["q_proj"]["kernel"]  # [L, D, Hq, Dh] over data/fsdp/tensor
    assert q.addressable_shards[0].data.shape == (1, 32, 2, config.head_dim)
    logits_sharded = _logits(config, sharded, batch)
    np.testing.assert_allclose(logits_sharded, _logits(config, single, batch), atol=1e-5, rtol=0)
    assert max_diff(logits_sharded, ref, batch[1]) <= TOL


class _Untouchable:
    def array(self):
        raise AssertionError("read a layer that the index does not ask for")


def test_callback_reads_only_the_requested_layers(tiny_hf_dir):
    folder = tiny_hf_dir("llama")
    config = ModelConfig.from_hf_dir(folder)
    ckpt = ck.open_checkpoint(folder)
    row = pm.expected_hf_tensors(config)["model.layers.1.mlp.down_proj.weight"][0]
    refs = [_Untouchable(), ckpt["model.layers.1.mlp.down_proj.weight"]]
    index = (slice(1, 2), slice(32, 64), slice(None))
    block = ck._read_slice(row, refs, config, index, np.dtype(np.float32))
    full = ckpt["model.layers.1.mlp.down_proj.weight"].array().T  # [F, D]
    np.testing.assert_array_equal(block, full[None, 32:64])


# ----------------------------------------------------------------------------- errors
@pytest.fixture
def editable_copy(tiny_hf_dir, tmp_path):
    """``editable_copy(kind, edit)``: a copy of a tiny checkpoint with its tensors edited by
    ``edit(dict[str, np.ndarray])``; returns (folder, config)."""

    def make(kind, edit):
        src = tiny_hf_dir(kind)
        dst = tmp_path / kind
        shutil.copytree(src, dst)
        tensors = st.load_safetensors(dst / st.SINGLE_FILE)
        edit(tensors)
        st.save_safetensors(dst / st.SINGLE_FILE, tensors)
        return dst, ModelConfig.from_hf_dir(dst)

    return make


def test_missing_tensor_is_named(editable_copy):
    folder, config = editable_copy("qwen2", lambda t: t.pop("model.layers.1.self_attn.k_proj.bias"))
    with pytest.raises(
        ck.HFCheckpointError, match=r"model\.layers\.1\.self_attn\.k_proj\.bias: missing"
    ):
        ck.load_hf_params(folder, config)


def test_extra_tensor_is_named(editable_copy):
    folder, config = editable_copy(
        "llama",
        lambda t: t.update({"model.layers.0.self_attn.extra.weight": np.zeros(3, np.float32)}),
    )
    with pytest.raises(ck.HFCheckpointError, match=r"model\.layers\.0\.self_attn\.extra\.weight"):
        ck.load_hf_params(folder, config)


def test_wrong_shape_names_expected_and_found(editable_copy):
    name = "model.layers.0.self_attn.q_proj.weight"
    folder, config = editable_copy("qwen3", lambda t: t.update({name: t[name][:64]}))
    with pytest.raises(ck.HFCheckpointError) as err:
        ck.load_hf_params(folder, config)
    assert f"{name}: expected shape [128, 64], found [64, 64] in model.safetensors" in str(
        err.value
    )


def test_ignorable_tensors_and_tied_lm_head(editable_copy, reference, batch):
    def add(t):
        t["model.rotary_emb.inv_freq"] = np.ones(8, np.float32)
        t["lm_head.weight"] = t["model.embed_tokens.weight"].copy()  # tied and equal: ignored

    folder, config = editable_copy("qwen2", add)
    assert config.tie_word_embeddings
    params = ck.load_hf_params(folder, config)
    assert "lm_head" not in params
    assert max_diff(_logits(config, params, batch), reference("qwen2")[1], batch[1]) <= TOL


def test_tied_config_with_a_different_lm_head_is_an_error(editable_copy):
    def add(t):
        t["lm_head.weight"] = t["model.embed_tokens.weight"] * 2

    folder, config = editable_copy("qwen2", add)
    with pytest.raises(ck.HFCheckpointError, match=r"lm_head\.weight: differs from"):
        ck.load_hf_params(folder, config)


def test_bad_folder_and_bad_shardings(tmp_path, tiny_hf_dir, mesh):
    folder = tiny_hf_dir("llama")
    config = ModelConfig.from_hf_dir(folder)
    with pytest.raises(ck.HFCheckpointError, match="neither"):
        ck.load_hf_params(tmp_path, config)
    shardings = mesh_shardings(config, mesh)
    del shardings["final_norm"]
    with pytest.raises(ck.HFCheckpointError, match="final_norm/scale"):
        ck.load_hf_params(folder, config, shardings=shardings)
    one_for_all = NamedSharding(mesh, PartitionSpec())  # one Sharding for every param works
    params = ck.load_hf_params(folder, config, shardings=one_for_all)
    assert params["embed"]["embedding"].sharding == one_for_all


# ----------------------------------------------------------------------------- export
@pytest.mark.parametrize("kind", ["qwen2", "qwen3", "llama_bias"])
def test_export_roundtrip(kind, tiny_hf_dir, reference, batch, mesh, tmp_path):
    config, _ = reference(kind)
    params = ck.load_hf_params(tiny_hf_dir(kind), config, shardings=mesh_shardings(config, mesh))
    out = ck.export_hf(params, config, tmp_path / "out", max_shard_bytes=200_000)
    assert (out / st.INDEX_FILE).is_file() and len(list(out.glob("*.safetensors"))) > 1
    assert json.loads((out / "config.json").read_text())["model_type"] == config.model_type
    assert (
        max_diff(hf_logits(out, "float32", *batch), _logits(config, params, batch), batch[1]) <= TOL
    )
    reloaded = ck.load_hf_params(out, ModelConfig.from_hf_dir(out))
    flat = pm.flatten(params)
    for path, arr in pm.flatten(reloaded).items():
        assert np.array_equal(np.asarray(arr), np.asarray(flat[path])), path


def test_export_bfloat16_with_tokenizer(tiny_hf_dir, reference, batch, tmp_path):
    import transformers

    from tests.fixtures.tokenizer import build_tiny_tokenizer

    config, _ = reference("llama")
    params = ck.load_hf_params(tiny_hf_dir("llama"), config)
    tok_dir = build_tiny_tokenizer(tmp_path / "tok")
    out = ck.export_hf(params, config, tmp_path / "bf16", dtype="bfloat16", tokenizer_dir=tok_dir)
    assert (out / st.SINGLE_FILE).is_file() and not (out / st.INDEX_FILE).exists()
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    transformers.AutoTokenizer.from_pretrained(out)
    reloaded = ck.load_hf_params(out, config, dtype=jnp.bfloat16)
    for path, arr in pm.flatten(reloaded).items():
        want = np.asarray(pm.flatten(params)[path]).astype(ml_dtypes.bfloat16)
        assert arr.dtype == jnp.bfloat16 and np.array_equal(np.asarray(arr), want), path
    bf16_ours = np.asarray(compute_logits(config, reloaded, *batch, dtype=jnp.bfloat16))
    assert max_diff(hf_logits(out, "bfloat16", *batch), bf16_ours, batch[1]) <= 5e-2


def test_export_rejects_mismatched_params(reference, tiny_hf_dir, tmp_path):
    config, _ = reference("llama")
    params = ck.load_hf_params(tiny_hf_dir("llama"), config)
    params["final_norm"]["scale"] = jnp.zeros(3)
    with pytest.raises(
        ck.HFCheckpointError, match=r"final_norm/scale: shape \[3\], expected \[64\]"
    ):
        ck.export_hf(params, config, tmp_path)
