"""The Flax (Linen) decoder: Qwen2/2.5, Qwen3 and Llama 3 in one module.

Layers are stacked with ``nn.scan`` (parameters carry a leading ``layers`` axis), which
keeps compile time flat in depth (``scan_layers=False`` unrolls the loop over the same
stacked parameters). Every parameter and the residual stream carry logical
axis names (see :mod:`reczero_jax.sharding`).

Three modes share one parameter tree:

* ``mode='full'``: causal attention over whole sequences (training forward, prefill).
  With ``return_kv`` it also returns the keys [L, B, Hkv, Dh, T] (slots last) and values
  [L, B, Hkv, T, Dh] of every layer, which the sampler keeps as the prompt cache.
* ``mode='grouped'``: the training forward of GRPO. Each row is one prompt followed by
  its G responses, [B, P + G*T]; the prompt is processed once and the responses attend
  to it (see :func:`attention.grouped_response_attention`). Use :func:`pack_groups` to
  build the inputs and :func:`response_hidden` to pick the states that predict each
  response token.
* ``mode='decode'``: one new token per row against a shared prompt cache and a
  per-row generated cache (see :func:`attention.shared_prompt_decode_attention`); it
  returns the new token's keys/values [L, N, Hkv, Dh] and leaves writing them to the
  caller, so the scanned layers never copy the cache. :func:`decode_step_unrolled` runs
  the same blocks unrolled over per-layer weights (:func:`split_layers`) and per-layer
  caches; there ``shared['write_index']`` tells each layer to write its token into its own
  cache first and attend over it (XLA then updates each cache in place).

``fused=True`` reads each layer's q/k/v and gate/up projections as one product each, from
the tree :func:`fuse_projections` builds (the sampler does, once per call); the stored
tree (checkpoints, Hugging Face mapping, training) keeps them separate.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from reczero_jax.model import attention
from reczero_jax.model.model_config import ModelConfig
from reczero_jax.model.rope import apply_rope, inverse_frequencies, rope_tables
from reczero_jax.sharding import constrain

Dtype = Any
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def _init(logical_axes: tuple[str | None, ...], stddev: float = 0.02):
    return nn.with_logical_partitioning(nn.initializers.normal(stddev), logical_axes)


def _zeros(logical_axes: tuple[str | None, ...]):
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), logical_axes)


# Output axes of the fused projections, shared by Decoder(fused=True) and fuse_projections:
# qkv_proj [..., Hkv, R + 2, Dh] and gate_up_proj [..., 2, I].
QKV_AXES = ("kv_heads", None, "head_dim")
GATE_UP_AXES = (None, "mlp")


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * scale, normalised in float32 like transformers."""

    eps: float
    dtype: Dtype
    param_dtype: Dtype
    logical_axis: str = "norm"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param(
            "scale",
            nn.with_logical_partitioning(nn.initializers.ones_init(), (self.logical_axis,)),
            (x.shape[-1],),
            self.param_dtype,
        )
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return scale.astype(self.dtype) * y.astype(self.dtype)


def tokens(x: jax.Array, feature_dims: int = 1) -> jax.Array:
    """``x`` [B, T, *F] as [B * T, *F] (``feature_dims`` = len(F)), the layout every
    projection reads.

    A projection of [B, T, D] activations gets a weight gradient that contracts over two
    axes (B and T); XLA:CPU lays that product out with the activations' cotangent
    transposed, a strided copy of an [intermediate, tokens] array per projection that
    doubled one layer's MLP gradient at 8,192 tokens (intermediate 1,024: 460 -> 220 ms on
    a 2-core Xeon). Over one flattened tokens axis there is no transpose. The reshape is
    free.
    """
    return x.reshape(-1, *x.shape[x.ndim - feature_dims :])


@jax.custom_vjp
def swiglu(gate: jax.Array, up: jax.Array) -> jax.Array:
    """silu(gate) * up, elementwise, whose backward pass keeps only ``gate`` and ``up``.

    Autodiff of the same expression also saves sigmoid(gate) and silu(gate), one more
    [tokens, intermediate] array per layer (the update's temporary memory at the peers'
    short shape: 158 -> 146 MB); the backward here recomputes the sigmoid in float32 in
    the one fused pass that forms both cotangents.
    """
    return nn.silu(gate) * up


def _swiglu_fwd(gate, up):
    return swiglu(gate, up), (gate, up)


def _swiglu_bwd(residuals, d_out):
    gate, up = residuals
    g, u, d = (x.astype(jnp.float32) for x in (gate, up, d_out))
    sig = jax.nn.sigmoid(g)
    d_gate = d * u * sig * (1.0 + g * (1.0 - sig))  # d silu(g) / dg = s (1 + g (1 - s))
    d_up = d * g * sig
    return d_gate.astype(gate.dtype), d_up.astype(up.dtype)


swiglu.defvjp(_swiglu_fwd, _swiglu_bwd)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)) (:func:`swiglu`)."""

    config: ModelConfig
    dtype: Dtype
    param_dtype: Dtype
    fused: bool = False  # one 'gate_up_proj' [D, 2, I] (see fuse_projections)

    @nn.compact
    def __call__(self, x_btd: jax.Array) -> jax.Array:
        cfg = self.config
        dense = functools.partial(
            nn.Dense, use_bias=cfg.mlp_bias, dtype=self.dtype, param_dtype=self.param_dtype
        )
        lead = x_btd.shape[:-1]
        x_nd = tokens(x_btd)  # N = B * T
        if self.fused:
            gate_up = nn.DenseGeneral(
                (2, cfg.intermediate_size),
                use_bias=cfg.mlp_bias,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernel_init=_init(("embed", *GATE_UP_AXES)),
                bias_init=_zeros(GATE_UP_AXES),
                name="gate_up_proj",
            )(x_nd)
            gate, up = gate_up[..., 0, :], gate_up[..., 1, :]
        else:
            gate = dense(
                cfg.intermediate_size,
                kernel_init=_init(("embed", "mlp")),
                bias_init=_zeros(("mlp",)),
                name="gate_proj",
            )(x_nd)
            up = dense(
                cfg.intermediate_size,
                kernel_init=_init(("embed", "mlp")),
                bias_init=_zeros(("mlp",)),
                name="up_proj",
            )(x_nd)
        h = swiglu(gate, up).reshape(*lead, -1)
        h = constrain(h, "act_batch", "act_length", "act_mlp")
        return dense(
            cfg.hidden_size,
            kernel_init=_init(("mlp", "embed")),
            bias_init=_zeros(("embed",)),
            name="down_proj",
        )(tokens(h)).reshape(*lead, cfg.hidden_size)


class Attention(nn.Module):
    """Grouped-query attention with RoPE (and Qwen3's per-head q/k RMSNorm)."""

    config: ModelConfig
    dtype: Dtype
    param_dtype: Dtype
    mode: str
    fused: bool = False  # one 'qkv_proj' [D, Hkv, R + 2, Dh] (see fuse_projections)
    attention: str = "einsum"  # full / grouped modes' kernel: one of attention.KERNELS

    @nn.compact
    def __call__(self, x_btd, positions_bt, shared, layer_cache):
        cfg = self.config
        proj = functools.partial(
            nn.DenseGeneral, axis=-1, dtype=self.dtype, param_dtype=self.param_dtype
        )
        lead = x_btd.shape[:-1]
        x_nd = tokens(x_btd)  # N = B * T
        if self.fused:
            r = cfg.num_heads // cfg.num_kv_heads
            qkv = proj(
                (cfg.num_kv_heads, r + 2, cfg.head_dim),
                use_bias=cfg.qkv_bias,
                kernel_init=_init(("embed", *QKV_AXES)),
                bias_init=_zeros(QKV_AXES),
                name="qkv_proj",
            )(x_nd).reshape(*lead, cfg.num_kv_heads, r + 2, cfg.head_dim)
            # [B, T, Hkv, R + 2, Dh]: each KV head's R query heads, then its key and value
            q = qkv[..., :r, :].reshape(*lead, cfg.num_heads, cfg.head_dim)
            k, v = qkv[..., r, :], qkv[..., r + 1, :]
        else:
            q, k, v = (a.reshape(*lead, *a.shape[1:]) for a in self._separate_qkv(x_nd, proj))
        return self._attend(q, k, v, positions_bt, shared, layer_cache)

    def _separate_qkv(self, x_nd, proj):
        cfg = self.config
        q = proj(
            (cfg.num_heads, cfg.head_dim),
            use_bias=cfg.qkv_bias,
            kernel_init=_init(("embed", "heads", "head_dim")),
            bias_init=_zeros(("heads", "head_dim")),
            name="q_proj",
        )(x_nd)
        k = proj(
            (cfg.num_kv_heads, cfg.head_dim),
            use_bias=cfg.qkv_bias,
            kernel_init=_init(("embed", "kv_heads", "head_dim")),
            bias_init=_zeros(("kv_heads", "head_dim")),
            name="k_proj",
        )(x_nd)
        v = proj(
            (cfg.num_kv_heads, cfg.head_dim),
            use_bias=cfg.qkv_bias,
            kernel_init=_init(("embed", "kv_heads", "head_dim")),
            bias_init=_zeros(("kv_heads", "head_dim")),
            name="v_proj",
        )(x_nd)
        return q, k, v

    def _attend(self, q, k, v, positions_bt, shared, layer_cache):
        cfg = self.config
        if cfg.qk_norm:
            norm = functools.partial(
                RMSNorm, cfg.rms_norm_eps, self.dtype, self.param_dtype, logical_axis="head_dim"
            )
            q = norm(name="q_norm")(q)
            k = norm(name="k_norm")(k)
        if "rope" in shared:  # the caller's tables, computed once for all layers
            rope = shared["rope"]
        else:  # a scanned decode step: a few angles, cheaper here than read from the loop
            rope = rope_tables(positions_bt, inverse_frequencies(cfg), materialise=False)
        q = apply_rope(q, rope)  # [B, T, Hq, Dh]
        k = apply_rope(k, rope)  # [B, T, Hkv, Dh]
        q = constrain(q, "act_batch", "act_length", "act_heads", None)
        k = constrain(k, "act_batch", "act_length", "act_kv_heads", None)
        v = constrain(v, "act_batch", "act_length", "act_kv_heads", None)

        if self.attention == "einsum":
            causal, grouped = attention.causal_attention, attention.grouped_response_attention
        else:
            impl = attention.KERNEL_IMPLEMENTATION[self.attention]
            causal = functools.partial(attention.causal_attention_dpa, implementation=impl)
            grouped = functools.partial(
                attention.grouped_response_attention_dpa, implementation=impl
            )
        if self.mode == "full":
            out = causal(q, k, v, shared["key_valid"])
            # keys [B, Hkv, Dh, T] (slots last, as the decode reads them), values [B, Hkv, T, Dh]
            new_kv = (k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3))
        elif self.mode == "grouped":  # [B, P + G*T]: a prompt, then its G responses
            b, p = shared["prompt_valid"].shape
            g, t = shared["resp_valid"].shape[1:]
            resp = grouped(
                q[:, p:].reshape(b, g, t, *q.shape[2:]),
                k[:, p:].reshape(b, g, t, *k.shape[2:]),
                v[:, p:].reshape(b, g, t, *v.shape[2:]),
                k[:, :p],
                v[:, :p],
                shared["prompt_valid"],
                shared["resp_valid"],
            )
            out = jnp.concatenate(
                [
                    causal(q[:, :p], k[:, :p], v[:, :p], shared["prompt_valid"]),
                    resp.reshape(b, g * t, *resp.shape[3:]),
                ],
                axis=1,
            )
            new_kv = None
        elif "write_index" in shared:  # decode over this layer's own caches: write, then read
            t = shared["write_index"]
            # keys [B, G, Hkv, Dh, Tg] (slots last), values [B, G, Hkv, Tg, Dh]
            gen_k, gen_v = layer_cache["gen_k"], layer_cache["gen_v"]
            token = gen_v.shape[:3] + gen_v.shape[4:]  # [B, G, Hkv, Dh]
            gen_k = jax.lax.dynamic_update_index_in_dim(
                gen_k, k[:, 0].reshape(token).astype(gen_k.dtype), t, axis=4
            )
            gen_v = jax.lax.dynamic_update_index_in_dim(
                gen_v, v[:, 0].reshape(token).astype(gen_v.dtype), t, axis=3
            )
            out = attention.shared_prompt_decode_attention(
                q[:, 0],
                None,
                None,
                layer_cache["prompt_k"],
                layer_cache["prompt_v"],
                shared["prompt_valid"],
                gen_k,
                gen_v,
                shared["gen_valid"],
            )[:, None]
            new_kv = (gen_k, gen_v)  # the layer's caches with the token written
        else:  # decode: T == 1
            out = attention.shared_prompt_decode_attention(
                q[:, 0],
                k[:, 0],
                v[:, 0],
                layer_cache["prompt_k"],
                layer_cache["prompt_v"],
                shared["prompt_valid"],
                layer_cache["gen_k"],
                layer_cache["gen_v"],
                shared["gen_valid"],
            )[:, None]
            new_kv = (k[:, 0], v[:, 0])  # [N, Hkv, Dh]
        lead = out.shape[:2]
        out = nn.DenseGeneral(
            cfg.hidden_size,
            axis=(-2, -1),
            use_bias=cfg.o_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=_init(("heads", "head_dim", "embed")),
            bias_init=_zeros(("embed",)),
            name="o_proj",
        )(tokens(out, 2))
        return out.reshape(*lead, cfg.hidden_size), new_kv


class Block(nn.Module):
    """Pre-norm transformer block; the body of the layer scan."""

    config: ModelConfig
    dtype: Dtype
    param_dtype: Dtype
    mode: str
    return_kv: bool
    fused: bool = False
    attention: str = "einsum"

    @nn.compact
    def __call__(self, x_btd, positions_bt, shared, layer_cache):
        cfg = self.config
        norm = functools.partial(RMSNorm, cfg.rms_norm_eps, self.dtype, self.param_dtype)
        h, new_kv = Attention(
            cfg, self.dtype, self.param_dtype, self.mode, self.fused, self.attention, name="attn"
        )(norm(name="input_norm")(x_btd), positions_bt, shared, layer_cache)
        x_btd = x_btd + h
        x_btd = x_btd + MLP(cfg, self.dtype, self.param_dtype, self.fused, name="mlp")(
            norm(name="post_attn_norm")(x_btd)
        )
        x_btd = constrain(x_btd, "act_batch", "act_length", "act_embed")
        return x_btd, (new_kv if self.return_kv else None)


def logits_from_hidden(hidden: jax.Array, kernel_dv: jax.Array, dtype: Dtype) -> jax.Array:
    """float32 logits [..., V] = hidden [..., D] @ kernel [D, V] (float32 accumulation).

    Both products of the backward pass take ``dtype`` operands too: the float32 cotangent of
    the logits is rounded to ``dtype`` first (float32 accumulation again). Without that,
    autodiff promotes the products to float32 (with bfloat16, TF32 products on a GPU).
    """
    if jnp.dtype(dtype) == jnp.float32:
        return _project(hidden.astype(dtype), kernel_dv.astype(dtype))
    return _project_low(hidden, kernel_dv, jnp.dtype(dtype), hidden.dtype, kernel_dv.dtype)


def _project(h, k):
    return jnp.einsum("...d,dv->...v", h, k, preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _project_low(hidden, kernel_dv, dtype, hidden_dtype, kernel_dtype):
    return _project(hidden.astype(dtype), kernel_dv.astype(dtype))


def _project_low_fwd(hidden, kernel_dv, dtype, hidden_dtype, kernel_dtype):
    h, k = hidden.astype(dtype), kernel_dv.astype(dtype)
    return _project(h, k), (h, k)


def _project_low_bwd(dtype, hidden_dtype, kernel_dtype, res, g_v):
    h, k = res
    g = g_v.astype(dtype)
    # XLA:CPU runs no low-precision x low-precision -> float32 product with these operand
    # layouts ("Unsupported element type for DotThunk"), and its products run in float32
    # anyway: there the rounded operands are widened first (the same values).
    dh, dk = jax.lax.platform_dependent(
        g, h, k, cpu=lambda *a: _backward_products(*(x.astype(jnp.float32) for x in a)),
        default=_backward_products,
    )  # fmt: skip
    return dh.astype(hidden_dtype), dk.astype(kernel_dtype)


def _backward_products(g, h, k):
    """(d hidden, d kernel) of the logits' cotangent g [..., V], float32 accumulation."""
    dh = jnp.einsum("...v,dv->...d", g, k, preferred_element_type=jnp.float32)
    dk = jnp.einsum("...d,...v->dv", h, g, preferred_element_type=jnp.float32)
    return dh, dk


_project_low.defvjp(_project_low_fwd, _project_low_bwd)


def lm_head_kernel(params, config: ModelConfig) -> jax.Array:
    """The [D, V] output projection: the transposed embedding when tied."""
    if config.tie_word_embeddings:
        return params["embed"]["embedding"].T
    return params["lm_head"]["kernel"]


class Decoder(nn.Module):
    """Decoder-only transformer.

    Attributes:
      config: the architecture.
      dtype: compute dtype (float32 or bfloat16); logits are always float32.
      param_dtype: storage dtype of the parameters.
      remat: 'none', 'full' or 'dots' (see REMAT_POLICIES).
      mode: 'full', 'grouped' or 'decode' (module docstring).
      return_kv: return the per-layer keys/values.
      output: 'logits' or 'hidden' (final-normed hidden states, for chunked log-probs).
      fused: read the fused projections of :func:`fuse_projections` ('qkv_proj',
        'gate_up_proj') instead of q/k/v and gate/up.
      scan_layers: run the layers in a loop (compile time flat in depth); False unrolls
        them (same parameters): no per-layer slicing of the stacked weights and no
        stacked residual buffers, faster for shallow models, compile time linear in depth.
      attention: the full and grouped modes' attention kernel, one of
        ``attention.KERNELS``: 'einsum' (batched products, any backend) or 'cudnn'
        (cuDNN's fused attention: NVIDIA GPUs, bfloat16 compute). Decode mode always
        uses :func:`attention.shared_prompt_decode_attention`.
    """

    config: ModelConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    remat: str = "none"
    mode: str = "full"
    return_kv: bool = False
    output: str = "logits"
    fused: bool = False
    scan_layers: bool = True
    attention: str = "einsum"

    @nn.compact
    def __call__(self, tokens_bt, positions_bt, shared, cache=None):
        """Runs the decoder.

        Args:
          tokens_bt: int32 [B, T] token ids (T == 1 in decode mode).
          positions_bt: int32 [B, T] RoPE positions (real tokens counted from 0).
          shared: dict of per-call arrays seen by every layer: ``key_valid`` bool [B, T]
            in full mode; ``prompt_valid`` bool [B, P] and ``gen_valid`` bool [Tg] in
            decode mode; ``prompt_valid`` [B, P] and ``resp_valid`` [B, G, T] in grouped
            mode. In the full and grouped modes the decoder adds ``rope``, the RoPE
            tables of ``positions_bt`` (:func:`rope.rope_tables`), computed once for all
            layers.
          cache: decode mode only: dict with ``prompt_k`` [L, B, Hkv, Dh, P] and ``gen_k``
            [L, N, Hkv, Dh, Tg] (keys slots last), ``prompt_v`` [L, B, Hkv, P, Dh] and
            ``gen_v`` [L, N, Hkv, Tg, Dh].
        Returns:
          (out, kv): out is float32 logits [B, T, V] or hidden [B, T, D]; kv is the
          per-layer (k, v) pair stacked on a leading L axis, or None.
        """
        cfg = self.config
        if self.mode not in ("full", "decode", "grouped"):
            raise ValueError(f"mode must be 'full', 'decode' or 'grouped', got {self.mode!r}")
        if self.attention not in attention.KERNELS:
            raise ValueError(
                f"attention must be one of {attention.KERNELS}, got {self.attention!r}"
            )
        embed = nn.Embed(
            cfg.vocab_size,
            cfg.hidden_size,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            embedding_init=_init(("vocab", "embed")),
            name="embed",
        )
        x = constrain(embed(tokens_bt), "act_batch", "act_length", "act_embed")

        block = Block
        policy = REMAT_POLICIES[self.remat]
        if self.remat != "none":
            block = nn.remat(Block, policy=policy, prevent_cse=False)
        layers = nn.scan(
            block,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(nn.broadcast, nn.broadcast, 0),
            length=cfg.num_layers,
            unroll=not self.scan_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )(
            cfg,
            self.dtype,
            self.param_dtype,
            self.mode,
            self.return_kv,
            self.fused,
            self.attention,
            name="layers",
        )
        if self.mode != "decode":
            shared = {**shared, "rope": rope_tables(positions_bt, inverse_frequencies(cfg))}
        x, kv = layers(x, positions_bt, shared, cache if cache is not None else {})
        x = RMSNorm(cfg.rms_norm_eps, self.dtype, self.param_dtype, name="final_norm")(x)
        if self.output == "hidden":
            return x, kv
        if cfg.tie_word_embeddings:
            kernel = embed.embedding.T
        else:
            kernel = LMHead(cfg, self.param_dtype, name="lm_head")()
        logits = logits_from_hidden(x, kernel, self.dtype)
        return constrain(logits, "act_batch", "act_length", "act_vocab"), kv


class LMHead(nn.Module):
    """Holds the untied output projection kernel [D, V]."""

    config: ModelConfig
    param_dtype: Dtype

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.param(
            "kernel",
            _init(("embed", "vocab")),
            (self.config.hidden_size, self.config.vocab_size),
            self.param_dtype,
        )


def fuse_projections(params, config: ModelConfig):
    """The parameter tree with each layer's q/k/v and gate/up projections fused, for
    ``Decoder(fused=True)``: three (two) matrix products per layer become one.

    ``attn/qkv_proj`` kernel [L, D, Hkv, R + 2, Dh] (R = Hq / Hkv): for each KV head, its
    R query heads, then its key and its value, so sharding the KV-head axis keeps every
    group on one device; ``mlp/gate_up_proj`` kernel [L, D, 2, I]. Biases alike. Every
    output column is the same dot product as before. A new tree (the inputs are copied
    once); other leaves are shared.
    """
    return {**params, "layers": _fuse_layer_tree(params["layers"], config, ("layers",))}


def _fuse_layer_tree(layers, config: ModelConfig, lead: tuple[str, ...]):
    """``layers`` (leaves with the leading logical axes ``lead``: ('layers',) for the
    stacked tree, () for one layer's) with q/k/v and gate/up fused as in
    :func:`fuse_projections`."""
    hkv, dh = config.num_kv_heads, config.head_dim
    r = config.num_heads // hkv
    attn, mlp = dict(layers["attn"]), dict(layers["mlp"])
    q, k, v = attn.pop("q_proj"), attn.pop("k_proj"), attn.pop("v_proj")

    def heads(x, n):  # [..., H, Dh] -> [..., Hkv, n, Dh]
        return x.reshape(*x.shape[:-2], hkv, n, dh)

    axes = {"kernel": (*lead, "embed"), "bias": lead}
    attn["qkv_proj"] = {
        name: constrain(
            jnp.concatenate([heads(q[name], r), heads(k[name], 1), heads(v[name], 1)], -2),
            *axes[name], *QKV_AXES,
        )
        for name in q
    }  # fmt: skip
    gate, up = mlp.pop("gate_proj"), mlp.pop("up_proj")
    mlp["gate_up_proj"] = {
        name: constrain(jnp.stack([gate[name], up[name]], axis=-2), *axes[name], *GATE_UP_AXES)
        for name in gate
    }
    return {**layers, "attn": attn, "mlp": mlp}


def split_layers(layers, config: ModelConfig) -> tuple:
    """The stored (unfused) stacked layer tree (leaves [L, ...]) as L trees of one layer
    each, with q/k/v and gate/up fused as in :func:`fuse_projections`.

    Every leaf is copied once (the fused projections straight from the stacked ones, the
    other leaves sliced), so a decode step unrolled over the result
    (:func:`decode_step_unrolled`) reads each layer's weights where they lie; a loop over
    a stacked tree copies each layer's slice out of the stack at every step.
    """
    return tuple(
        _fuse_layer_tree(jax.tree.map(lambda a, i=i: a[i], layers), config, ())
        for i in range(config.num_layers)
    )


def decode_step_unrolled(
    config: ModelConfig, dtype, params, layers, tokens_n, positions_n1, shared, caches
):
    """One decode step (``Decoder(mode='decode', fused=True)``'s arithmetic) with the
    layers unrolled over per-layer weights and per-layer caches.

    Each layer writes the token's key and value into its own generated cache first and
    then attends over it, so XLA updates the caches in place (a layer that read its
    cache before the caller wrote it would have the cache copied at every step).

    Args:
      config: the architecture.
      dtype: compute dtype.
      params: the parameter tree; its ``embed`` and ``final_norm`` are read.
      layers: :func:`split_layers` of its ``layers``.
      tokens_n: int32 [N] the current tokens, N = B * G rows grouped by prompt.
      positions_n1: int32 [N, 1] their RoPE positions.
      shared: ``prompt_valid`` bool [B, P]; ``gen_valid`` bool [Tg], True on the slots
        written so far, this step's included; ``write_index`` int32 [], this step's slot.
      caches: one dict per layer: ``prompt_k`` [B, Hkv, Dh, P] and ``gen_k`` [B, G, Hkv,
        Dh, Tg] (keys slots last), ``prompt_v`` [B, Hkv, P, Dh] and ``gen_v`` [B, G, Hkv,
        Tg, Dh].
    Returns:
      (hidden [N, 1, D] after the final norm, one (gen_k, gen_v) pair per layer with this
      step's token written).
    """
    embed = nn.Embed(config.vocab_size, config.hidden_size, dtype=dtype)
    x = embed.apply({"params": params["embed"]}, tokens_n[:, None])
    x = constrain(x, "act_batch", "act_length", "act_embed")
    shared = {**shared, "rope": rope_tables(positions_n1, inverse_frequencies(config))}
    block = Block(config, dtype, dtype, "decode", return_kv=True, fused=True)
    written = []
    for layer, cache in zip(layers, caches, strict=True):
        x, kv = block.apply({"params": layer}, x, positions_n1, shared, cache)
        written.append(kv)
    norm = RMSNorm(config.rms_norm_eps, dtype, dtype)
    return norm.apply({"params": params["final_norm"]}, x), tuple(written)


# ------------------------------------------------------------------ functional helpers
def pack_groups(prompt_bp, prompt_valid_bp, resp_bgt, resp_valid_bgt):
    """Inputs of the grouped mode: (tokens [B, P + G*T], positions, shared).

    Prompts are left-padded ([B, P]); responses right-padded ([B, G, T]). Positions count
    real prompt tokens from 0 and continue through each response.
    """
    b, g, t = resp_bgt.shape
    prompt_len_b = prompt_valid_bp.sum(axis=1).astype(jnp.int32)
    prompt_pos = positions_from_mask(prompt_valid_bp)
    resp_pos = prompt_len_b[:, None, None] + jnp.arange(t, dtype=jnp.int32)[None, None, :]
    tokens = jnp.concatenate([prompt_bp, resp_bgt.reshape(b, g * t)], axis=1).astype(jnp.int32)
    positions = jnp.concatenate(
        [prompt_pos, jnp.broadcast_to(resp_pos, (b, g, t)).reshape(b, g * t)], axis=1
    )
    shared = {
        "prompt_valid": prompt_valid_bp.astype(bool),
        "resp_valid": resp_valid_bgt.astype(bool),
    }
    return tokens, positions, shared


def response_hidden(hidden_bsd: jax.Array, prompt_len: int, g: int, t: int) -> jax.Array:
    """[B, G, T, D] hidden states that predict each response token.

    Response token 0 is predicted from the prompt's last position (the prompt is
    left-padded, so that is index P - 1); token t > 0 from response token t - 1.
    """
    b, _, d = hidden_bsd.shape
    last_prompt = hidden_bsd[:, prompt_len - 1]  # [B, D]
    resp = hidden_bsd[:, prompt_len:].reshape(b, g, t, d)
    first = jnp.broadcast_to(last_prompt[:, None, None, :], (b, g, 1, d))
    return jnp.concatenate([first, resp[:, :, :-1]], axis=2)


def positions_from_mask(mask_bt: jax.Array) -> jax.Array:
    """RoPE positions that count real tokens only: cumsum(mask) - 1, clipped at 0."""
    return jnp.maximum(jnp.cumsum(mask_bt.astype(jnp.int32), axis=-1) - 1, 0)


@functools.partial(jax.jit, static_argnames=("config", "dtype"))
def compute_logits(
    config: ModelConfig,
    params,
    tokens_bt: jax.Array,
    mask_bt: jax.Array | None = None,
    dtype: Dtype = jnp.float32,
) -> jax.Array:
    """float32 logits [B, T, V] of a full causal forward (mask True on real tokens).

    Jitted; one compilation per (config, dtype, shapes).
    """
    tokens_bt = jnp.asarray(tokens_bt, jnp.int32)
    if mask_bt is None:
        mask_bt = jnp.ones(tokens_bt.shape, bool)
    mask_bt = jnp.asarray(mask_bt, bool)
    model = Decoder(config, dtype=dtype, param_dtype=dtype)
    logits, _ = model.apply(
        {"params": params}, tokens_bt, positions_from_mask(mask_bt), {"key_valid": mask_bt}
    )
    return logits
