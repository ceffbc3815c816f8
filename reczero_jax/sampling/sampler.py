"""Jitted group sampling with a shared-prompt KV cache.

``GroupSampler.sample(params, prompts, G)`` answers B prompts (lists of token ids) with G
samples each and returns :class:`GroupSamples` laid out by group: ``tokens`` /
``logprobs`` [B, G, T], ``lengths`` / ``stopped`` [B, G], and the padded prompts the
prefill used, ``prompt`` / ``prompt_valid`` [B, P]. Inside, with N = B * G decode rows:

1. prompts are left-padded to the smallest length bucket P that holds the longest one
   (and the batch to a multiple of the mesh's batch shards, repeating the last prompt);
2. each prompt is prefilled ONCE; its keys [L, B, Hkv, Dh, P] (slots last) and values
   [L, B, Hkv, P, Dh] are kept as one prompt cache that all G samples of the prompt read
   (it is never repeated G times);
3. one ``lax.while_loop`` decodes all N rows (row r answers prompt r // G); each step
   attends to the prompt cache, the row's own generated cache (keys [L, N, Hkv, Dh, T],
   slots last, values [L, N, Hkv, T, Dh]) and its current token, and writes the current
   token's keys/values into the generated cache in place;
4. the loop exits when every row has emitted an EOS id or completed a stop string, or
   after ``max_new_tokens`` tokens; with ``SamplerSpec.cache_phases`` = K (4 by default)
   it is K loops in a row, each over a generated cache just long enough for its steps
   (:func:`phase_cache_lengths`; zero-padded between loops), so early steps read fewer
   cache slots (the same samples; K compiled decode steps);
5. the rows are reshaped to [B, G, ...] inside the jitted function (free: row r = b * G + g,
   so each batch shard keeps its own prompts' rows), and the batch padding is dropped.

Each layer's q/k/v and gate/up projections are fused once per call
(:func:`reczero_jax.model.decoder.fuse_projections`): the prefill and every decode step
run one matrix product where there were three (two), which cut a 64-token rollout of the
benchmarks' tiny model by about a fifth on CPU. The price is one copy of those weights
(sharded like them) while the sampler runs.

With ``SamplerSpec.unroll_layers`` the decode step is unrolled over per-layer trees
(:func:`reczero_jax.model.decoder.split_layers`: fused, one copy of every layer weight per
call), per-layer prompt caches and per-layer generated caches ([B, G, Hkv, Dh, T] keys,
[B, G, Hkv, T, Dh] values); each layer writes its token into its cache and then attends
over it (:func:`reczero_jax.model.decoder.decode_step_unrolled`), so no weight or cache
is copied at a step (the scanned loop copies each layer's slices out of the stacked
arrays). The prefill then reads the stored, unfused tree. Left as None, the sampler
unrolls on CPU and scans elsewhere (:func:`unroll_by_default`).

Rows are sharded over the mesh's ('data', 'fsdp') axes and weights over 'tensor'
(:data:`reczero_jax.sharding.SAMPLE_RULES`); every output is sharded along B over
``sharding.BATCH_AXES`` when B is a multiple of the batch shards (see ``sample``). Each
(padded batch, bucket, G) shape is compiled once ahead of time and cached; ``compiles``
counts the compilations.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reczero_jax import multihost, sharding
from reczero_jax.model.decoder import (
    Decoder,
    decode_step_unrolled,
    fuse_projections,
    lm_head_kernel,
    logits_from_hidden,
    split_layers,
)
from reczero_jax.model.model_config import ModelConfig
from reczero_jax.model.params import param_shardings
from reczero_jax.observe.logs import log
from reczero_jax.sampling.methods import Method, draw
from reczero_jax.text.stop_strings import StopStrings
from reczero_jax.text.stop_strings import update as stop_update

DEFAULT_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096)


class SamplerError(ValueError):
    """Bad sampler input (empty prompt, prompt longer than the largest bucket...)."""


@struct.dataclass
class GroupSamples:
    """G samples for each of B prompts: ``tokens[b, g]`` is the g-th answer to prompt b.

    B is the number of prompts given to ``sample`` (batch padding removed), G the number
    of samples per prompt, T = ``max_new_tokens`` and P the prompt bucket.

    Attributes:
      tokens: int32 [B, G, T] generated ids, ``pad_id`` after each sample's end.
      logprobs: float32 [B, G, T] log-probs of the sampled ids (0 after the end).
      lengths: int32 [B, G] generated tokens per sample, the EOS / stop token included.
      stopped: bool [B, G] True where the sample ended by EOS or a stop string (False: it
        ran out of ``max_new_tokens``).
      prompt: int32 [B, P] the prompts, left-padded with ``pad_id`` to the bucket P:
        exactly the array the prefill read.
      prompt_valid: bool [B, P] True at the prompt's real tokens (the right-aligned ones).
    """

    tokens: jax.Array
    logprobs: jax.Array
    lengths: jax.Array
    stopped: jax.Array
    prompt: jax.Array
    prompt_valid: jax.Array


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """Static settings of one sampler (hashable: part of the compile key)."""

    max_new_tokens: int
    method: Method
    eos_ids: tuple[int, ...]
    pad_id: int
    buckets: tuple[int, ...] = DEFAULT_BUCKETS
    # decode steps unrolled over per-layer weights and caches; None: unroll_by_default
    unroll_layers: bool | None = None
    cache_phases: int = 4  # decode loops over a growing generated cache (phase_cache_lengths)

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise SamplerError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.cache_phases < 1:
            raise SamplerError(f"cache_phases must be >= 1, got {self.cache_phases}")
        if not self.buckets or sorted(self.buckets) != list(self.buckets):
            raise SamplerError(f"prompt buckets must be increasing, got {self.buckets}")


# ``sampling.decode_loop`` -> SamplerSpec.unroll_layers
DECODE_LOOPS = {"auto": None, "unrolled": True, "scanned": False}


def unroll_by_default(platform: str) -> bool:
    """Whether the decode step is unrolled over the layers when ``SamplerSpec.unroll_layers``
    is None: on CPU only.

    XLA:CPU materialises the dynamic slices of a layer loop before a product reads them,
    so the scanned step copies every layer's weights and cache slab at every step; the
    unrolled one samples 15-30% faster there (README: the group sampler) and CPU runs are
    small. The price, one more copy of the layers' o/down weights while sampling (+1.4 GB
    of temporaries at Qwen2.5-1.5B's shapes in float32) and a compile time linear in
    depth, is not paid on GPU and TPU, where the gain has not been measured.
    """
    return platform == "cpu"


def unrolls(decode_loop: str, platform: str) -> bool:
    """Whether ``sampling.decode_loop`` (a key of DECODE_LOOPS) unrolls on ``platform``."""
    unroll = DECODE_LOOPS[decode_loop]
    return unroll_by_default(platform) if unroll is None else unroll


def phase_cache_lengths(max_new_tokens: int, phases: int) -> list[int]:
    """The generated-token cache's length in each decode loop: increasing, the last one
    ``max_new_tokens``. Loop k runs the decode steps t < its length (t < max_new_tokens - 1
    in the last) that earlier loops did not, so its attention reads only that many slots."""
    per = -(-max_new_tokens // phases)
    return sorted({min((k + 1) * per, max_new_tokens) for k in range(phases)})


def _generate(
    params,
    prompt_bp: jax.Array,
    prompt_valid_bp: jax.Array,
    key: jax.Array,
    stop: StopStrings | None,
    *,
    config: ModelConfig,
    spec: SamplerSpec,
    num_samples: int,
    dtype: Any,
) -> GroupSamples:
    """The traced body: prefill once, decode N = B * G rows in one while_loop, regroup.

    ``prompt_bp`` / ``prompt_valid_bp`` are the left-padded prompts [B, P] (B already a
    multiple of the batch shards); returns every ``GroupSamples`` field with leading B.
    """
    b, p = prompt_bp.shape
    g, t_max = num_samples, spec.max_new_tokens
    n = b * g
    positions_bp = jnp.maximum(jnp.cumsum(prompt_valid_bp.astype(jnp.int32), axis=1) - 1, 0)
    prompt_len_n = jnp.repeat(prompt_valid_bp.sum(axis=1).astype(jnp.int32), g)

    # ---- prefill: one forward over the B prompts, keys/values kept as the prompt cache.
    # Each layer's q/k/v and gate/up are fused once per call (fewer products per step):
    # the stacked tree for a scanned decode, per-layer trees for an unrolled one (then the
    # prefill reads the stored tree, so the weights are copied once, not twice).
    fused = not spec.unroll_layers
    if fused:
        params = fuse_projections(params, config)
    prefill = Decoder(
        config, dtype=dtype, mode="full", return_kv=True, output="hidden", fused=fused
    )
    hidden_bpd, (prompt_k, prompt_v) = prefill.apply(
        {"params": params}, prompt_bp, positions_bp, {"key_valid": prompt_valid_bp}
    )
    prompt_k = sharding.constrain(prompt_k, None, "act_batch", "act_kv_heads", None, None)
    prompt_v = sharding.constrain(prompt_v, None, "act_batch", "act_kv_heads", None, None)
    kernel = lm_head_kernel(params, config)
    last_logits_bv = logits_from_hidden(hidden_bpd[:, -1], kernel, dtype)
    logits_nv = jnp.repeat(last_logits_bv, g, axis=0)  # [N, V]: row r <- prompt r // G

    eos = jnp.asarray(spec.eos_ids or (-1,), jnp.int32)

    def finish(tokens_n, logp_n, done_n, lengths_n, window):
        """Masks rows already done, then updates done/lengths with this step's token."""
        tokens_n = jnp.where(done_n, spec.pad_id, tokens_n)
        logp_n = jnp.where(done_n, 0.0, logp_n)
        lengths_n = lengths_n + (~done_n).astype(jnp.int32)
        hit_n = jnp.isin(tokens_n, eos)
        if stop is not None:
            window, stop_hit = stop_update(stop, window, jnp.where(done_n, -1, tokens_n))
            hit_n = hit_n | stop_hit
        return tokens_n, logp_n, done_n | (hit_n & ~done_n), lengths_n, window

    tokens_nt = jnp.full((n, t_max), spec.pad_id, jnp.int32)
    logprobs_nt = jnp.zeros((n, t_max), jnp.float32)
    done_n = jnp.zeros((n,), bool)
    lengths_n = jnp.zeros((n,), jnp.int32)
    window = stop.init_window(n) if stop is not None else jnp.zeros((n, 1), jnp.int32)
    tok0, logp0 = draw(logits_nv, jax.random.fold_in(key, 0), spec.method)
    tok0, logp0, done_n, lengths_n, window = finish(tok0, logp0, done_n, lengths_n, window)
    tokens_nt = tokens_nt.at[:, 0].set(tok0)
    logprobs_nt = logprobs_nt.at[:, 0].set(logp0)

    cache_lengths = phase_cache_lengths(t_max, spec.cache_phases)
    if spec.unroll_layers:
        # per-layer fused weights and caches (copied once per call), the layers unrolled
        num_layers = config.num_layers
        layers = split_layers(params["layers"], config)
        prompt_kv = [(prompt_k[i], prompt_v[i]) for i in range(num_layers)]
        cache_lead, cache_axes = (b, g), ("act_batch", None, "act_kv_heads", None, None)
    else:
        cache_lead = (config.num_layers, n)
        cache_axes = (None, "act_batch", "act_kv_heads", None, None)
        decoder = Decoder(
            config, dtype=dtype, mode="decode", return_kv=True, output="hidden", fused=True
        )

    def grown(cache, length, kind):
        """``cache`` (or zeros) with its slot axis zero-padded to ``length`` slots. The
        generated keys keep their slots last, [.., Hkv, Dh, Tg], the values [.., Hkv, Tg,
        Dh] (see attention.shared_prompt_decode_attention)."""
        tail = (config.head_dim, length) if kind == "k" else (length, config.head_dim)
        if cache is None:
            zeros = jnp.zeros((*cache_lead, config.num_kv_heads, *tail), dtype)
            return sharding.constrain(zeros, *cache_axes)
        pad = [(0, 0)] * 3 + [(0, want - have) for want, have in zip(tail, cache.shape[3:])]
        return sharding.constrain(jnp.pad(cache, pad), *cache_axes)

    copies = config.num_layers if spec.unroll_layers else 1  # per-layer caches or one stack
    gen_k = tuple(grown(None, cache_lengths[0], "k") for _ in range(copies))
    gen_v = tuple(grown(None, cache_lengths[0], "v") for _ in range(copies))

    def decode(token_n, t, gk, gv):
        """(hidden [N, 1, D] of the tokens at slot t, the caches with them written)."""
        positions = (prompt_len_n + t)[:, None]
        slots = jnp.arange(gv[0].shape[3])
        if spec.unroll_layers:
            shared = {"prompt_valid": prompt_valid_bp, "gen_valid": slots <= t, "write_index": t}
            caches = [
                {"prompt_k": pk, "prompt_v": pv, "gen_k": k, "gen_v": v}
                for (pk, pv), k, v in zip(prompt_kv, gk, gv, strict=True)
            ]
            hidden, written = decode_step_unrolled(
                config, dtype, params, layers, token_n, positions, shared, caches
            )
            return hidden, tuple(k for k, _ in written), tuple(v for _, v in written)
        shared = {"prompt_valid": prompt_valid_bp, "gen_valid": slots < t}
        (gk,), (gv,) = gk, gv
        cache = {"prompt_k": prompt_k, "prompt_v": prompt_v, "gen_k": gk, "gen_v": gv}
        hidden, (k_new, v_new) = decoder.apply(
            {"params": params}, token_n[:, None], positions, shared, cache
        )  # hidden [N, 1, D]; k_new, v_new [L, N, Hkv, Dh]
        gk = jax.lax.dynamic_update_index_in_dim(gk, k_new.astype(dtype), t, axis=4)
        gv = jax.lax.dynamic_update_index_in_dim(gv, v_new.astype(dtype), t, axis=3)
        return hidden, (gk,), (gv,)

    def steps_before(end):
        def cond(carry):
            t, _, _, done, *_ = carry
            return (t < end) & ~jnp.all(done)

        return cond

    def body(carry):
        # t: index of the newest sampled token, whose keys/values are not cached yet.
        t, tokens, logprobs, done, lengths, gk, gv, win = carry
        token_n = jax.lax.dynamic_index_in_dim(tokens, t, axis=1, keepdims=False)
        hidden, gk, gv = decode(token_n, t, gk, gv)
        logits = logits_from_hidden(hidden[:, 0], kernel, dtype)
        nxt, logp = draw(logits, jax.random.fold_in(key, t + 1), spec.method)
        nxt, logp, done, lengths, win = finish(nxt, logp, done, lengths, win)
        tokens = jax.lax.dynamic_update_index_in_dim(tokens, nxt, t + 1, axis=1)
        logprobs = jax.lax.dynamic_update_index_in_dim(logprobs, logp, t + 1, axis=1)
        return t + 1, tokens, logprobs, done, lengths, gk, gv, win

    carry = (jnp.int32(0), tokens_nt, logprobs_nt, done_n, lengths_n, gen_k, gen_v, window)
    for phase, length in enumerate(cache_lengths):
        if phase:  # the next loop's cache: the slots written so far, then zeros
            t, tokens_nt, logprobs_nt, done_n, lengths_n, gk, gv, window = carry
            gk = tuple(grown(c, length, "k") for c in gk)
            gv = tuple(grown(c, length, "v") for c in gv)
            carry = (t, tokens_nt, logprobs_nt, done_n, lengths_n, gk, gv, window)
        carry = jax.lax.while_loop(steps_before(min(length, t_max - 1)), body, carry)
    _, tokens_nt, logprobs_nt, done_n, lengths_n, *_ = carry
    # Row r = b * G + g: a contiguous split of N over the batch shards is the same split of B,
    # so the regrouping moves no data between devices.
    return GroupSamples(
        tokens=tokens_nt.reshape(b, g, t_max),
        logprobs=logprobs_nt.reshape(b, g, t_max),
        lengths=lengths_n.reshape(b, g),
        stopped=done_n.reshape(b, g),
        prompt=prompt_bp,
        prompt_valid=prompt_valid_bp,
    )


class GroupSampler:
    """Samples G answers for each of B prompts on a mesh; see :meth:`sample`.

    Args:
      config: the model architecture.
      mesh: ('data', 'fsdp', 'tensor') mesh; rows are split over data x fsdp.
      spec: static settings (max_new_tokens, method, eos/pad ids, prompt buckets, the
        decode loop); ``self.spec`` has ``unroll_layers`` decided for the mesh's platform.
      stop: stop strings (built with the tokenizer's byte table), or None.
      dtype: compute and KV-cache dtype.
      seed: base of the per-call RNG keys used when ``sample`` gets no key.
    """

    def __init__(
        self,
        config: ModelConfig,
        mesh: Mesh,
        spec: SamplerSpec,
        stop: StopStrings | None = None,
        dtype: Any = jnp.float32,
        seed: int = 0,
    ):
        if spec.unroll_layers is None:
            platform = mesh.devices.flat[0].platform
            spec = dataclasses.replace(spec, unroll_layers=unroll_by_default(platform))
        self.config, self.mesh, self.spec, self.dtype = config, mesh, spec, dtype
        if stop is not None and stop.num_strings == 0:
            stop = None
        self.stop = stop
        self._param_shardings = None
        self._compiled: dict[tuple, Any] = {}
        self._base_key = jax.random.key(seed)
        self._calls = 0
        self._row_sharding = NamedSharding(mesh, PartitionSpec(sharding.BATCH_AXES))
        self._replicated = NamedSharding(mesh, PartitionSpec())

    @property
    def compiles(self) -> int:
        """How many (batch, bucket) shapes have been compiled."""
        return len(self._compiled)

    def param_shardings(self, params):
        if self._param_shardings is None:
            dtype = jax.tree.leaves(params)[0].dtype
            self._param_shardings = param_shardings(
                self.config, self.mesh, sharding.SAMPLE_RULES, dtype
            )
        return self._param_shardings

    def bucket_for(self, length: int) -> int:
        for bucket in self.spec.buckets:
            if length <= bucket:
                return bucket
        raise SamplerError(
            f"a prompt of {length} tokens is longer than the largest prompt bucket "
            f"({self.spec.buckets[-1]}); add a larger bucket or shorten the prompt"
        )

    def pad_prompts(self, prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Left-pads prompts into ([B', P] int32 ids, [B', P] bool valid) on the host.

        B' is B rounded up to a multiple of the mesh's batch shards (the extra rows repeat
        the last prompt) and P the smallest bucket that holds the longest prompt. ``sample``
        pads the same way (each process only the rows it holds) and returns the first B
        rows as ``GroupSamples.prompt`` / ``prompt_valid``; callers need not call this.
        """
        b = self._padded_rows(prompts)
        rows = [prompts[min(i, len(prompts) - 1)] for i in range(b)]
        return self._pad(rows, self.bucket_for(max(len(x) for x in rows)), 0)

    def _padded_rows(self, prompts) -> int:
        if not len(prompts):
            raise SamplerError("no prompts given")
        shards = sharding.batch_shards(self.mesh)
        return -(-len(prompts) // shards) * shards

    def _pad(self, rows, p: int, first: int) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` (prompt ``first`` onwards) left-padded into [len(rows), p]."""
        tokens = np.full((len(rows), p), self.spec.pad_id, np.int32)
        valid = np.zeros((len(rows), p), bool)
        for r, prompt in enumerate(rows):
            prompt = np.asarray(prompt, np.int32)
            if len(prompt) == 0:
                raise SamplerError(f"prompt {first + r} is empty")
            if prompt.min() < 0 or prompt.max() >= self.config.vocab_size:
                raise SamplerError(
                    f"prompt {first + r} holds token ids outside [0, {self.config.vocab_size})"
                )
            tokens[r, p - len(prompt) :] = prompt
            valid[r, p - len(prompt) :] = True
        return tokens, valid

    def _place_prompts(self, prompts) -> tuple[jax.Array, jax.Array]:
        """The padded prompts as global [B', P] arrays; this process reads (``prompts[i]``)
        only the rows its devices hold, and all processes agree on the bucket P."""
        b = self._padded_rows(prompts)
        rows = multihost.local_rows(self._row_sharding, b)
        mine = [prompts[min(i, len(prompts) - 1)] for i in range(rows.start, rows.stop)]
        p = self.bucket_for(multihost.agree_max(max(len(x) for x in mine)))
        tokens, valid = self._pad(mine, p, rows.start)
        return (
            multihost.global_array(self._row_sharding, tokens, b),
            multihost.global_array(self._row_sharding, valid, b),
        )

    def lower(self, params, tokens, valid, key, num_samples: int):
        """The jitted sampler lowered for these arguments (arrays or ShapeDtypeStructs with
        shardings: ``tools/lower_config`` checks real shapes without weights this way)."""
        fn = functools.partial(
            _generate, config=self.config, spec=self.spec, num_samples=num_samples, dtype=self.dtype
        )
        row = self._row_sharding
        out = GroupSamples(
            tokens=row, logprobs=row, lengths=row, stopped=row, prompt=row, prompt_valid=row
        )
        stop_sh = None if self.stop is None else jax.tree.map(lambda _: self._replicated, self.stop)
        jitted = jax.jit(
            fn,
            in_shardings=(self.param_shardings(params), row, row, self._replicated, stop_sh),
            out_shardings=out,
        )
        with sharding.use_mesh(self.mesh, sharding.SAMPLE_RULES):
            return jitted.lower(params, tokens, valid, key, self.stop)

    def _executable(self, params, tokens, valid, key, num_samples):
        shape_key = (tokens.shape, num_samples)
        if shape_key not in self._compiled:
            b, p = tokens.shape
            spec = self.spec
            loop = "unrolled" if spec.unroll_layers else "scanned"
            phases = len(phase_cache_lengths(spec.max_new_tokens, spec.cache_phases))
            log.info("compiling the sampler: %d prompts x %d samples, prompt bucket %d, %d new "
                     "tokens, decode loop %s in %d cache phase(s)", b, num_samples, p,
                     spec.max_new_tokens, loop, phases)  # fmt: skip
            self._compiled[shape_key] = self.lower(
                params, tokens, valid, key, num_samples
            ).compile()
        return self._compiled[shape_key]

    def sample(
        self,
        params,
        prompts: Sequence[Sequence[int]],
        num_samples: int,
        key: jax.Array | None = None,
    ) -> GroupSamples:
        """G = ``num_samples`` answers for each of the B ``prompts`` (lists of token ids).

        ``prompts`` is any sequence (``len`` and indexing): each process reads only the
        rows its devices hold, so a lazy sequence is tokenized only where it is used.

        Without ``key``, every call uses a fresh key folded from the seed and a call
        counter, so repeated calls never reuse randomness.

        Returns:
          ``GroupSamples`` for the B real prompts only (batch padding removed): tokens /
          logprobs [B, G, T], lengths / stopped [B, G], prompt / prompt_valid [B, P].
          All are sharded along B over ``sharding.BATCH_AXES`` when B is a multiple of the
          mesh's batch shards; otherwise the batch was padded and the B real rows sliced
          off it cannot be split evenly, so they are not sharded along B (JAX replicates
          them).
        """
        if num_samples < 1:
            raise SamplerError(f"num_samples must be >= 1, got {num_samples}")
        if key is None:
            key = jax.random.fold_in(self._base_key, self._calls)
        self._calls += 1
        tokens, valid = self._place_prompts(prompts)
        params = jax.device_put(params, self.param_shardings(params))
        key, stop = multihost.replicate((key, self.stop), self._replicated)
        out = self._executable(params, tokens, valid, key, num_samples)(
            params, tokens, valid, key, stop
        )
        b = len(prompts)
        if b == out.lengths.shape[0]:
            return out
        return jax.tree.map(lambda x: x[:b], out)
