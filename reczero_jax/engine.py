"""The one builder of a run's model side, and the one rule for where weights come from.

:func:`build_engine` turns ``Settings`` into an :class:`Engine`: the mesh, the tokenizer,
the model config, the token byte table, and factories for weights (:meth:`Engine.weights`)
and samplers (:meth:`Engine.sampler`). Every mode and tool builds its model through it.
Each step checks its input against the others before anything is compiled (head counts
against the mesh, tokenizer vocabulary against the model...), raising errors that name
the config key to change.

:func:`plan_phase` decides, top to bottom, where a phase's weights come from and whether
it continues its own checkpoint.

Every folder may be local or remote (``gs://``, :mod:`reczero_jax.paths`). transformers and
our memory-mapped safetensors reader need local files, so a remote Hugging Face or
tokenizer folder is copied to a local temporary folder first (once per process): its small
files (``HF_SMALL_FILES``: config, tokenizer, generation config) when the engine is built,
its weights (``*.safetensors`` and the index) only when they are loaded. A scratch model's
tokenizer trained for a remote workdir is written locally and uploaded to
``workdir/tokenizer``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
from etils import epath
from jax.sharding import Mesh

from reczero_jax import multihost, paths, sharding
from reczero_jax.checkpointing import checkpoint_steps, restore_checkpoint
from reczero_jax.config_parsing import ConfigError
from reczero_jax.hf.checkpoint import load_hf_params
from reczero_jax.model.model_config import ModelConfig
from reczero_jax.model.params import DTYPES, init_params, sharded_param_shapes
from reczero_jax.sampling.methods import Greedy, Sampling
from reczero_jax.sampling.sampler import DECODE_LOOPS, GroupSampler, SamplerSpec
from reczero_jax.settings import SamplingSettings, ScratchModel, Settings
from reczero_jax.text.stop_strings import StopStrings
from reczero_jax.text.tiny_tokenizer import build_tiny_tokenizer
from reczero_jax.text.token_bytes import TokenBytes, token_byte_table
from reczero_jax.text.tokenizer import eos_token_ids, load_tokenizer, pad_token_id

# The files of a Hugging Face folder copied locally when it is remote: every small one the
# tokenizer, config.json and generation_config.json may need (not the weights).
HF_SMALL_FILES = ("*.json", "*.jinja", "*.txt", "*.model")


# ------------------------------------------------------------------ where weights come from
@dataclasses.dataclass(frozen=True)
class WeightSource:
    """Where weights are read from.

    kind: 'phase' (the latest checkpoint of an earlier phase of this run, ``path`` and
    ``step`` set), 'resume_from' (an Orbax checkpoint directory and step), 'hf' (a Hugging
    Face folder) or 'scratch' (random initialisation from the seed).
    """

    kind: Literal["phase", "resume_from", "hf", "scratch"]
    path: epath.Path | None = None
    step: int | None = None

    def __str__(self) -> str:
        where = "" if self.path is None else f" {self.path}"
        return f"{self.kind}{where}{'' if self.step is None else f' step {self.step}'}"


@dataclasses.dataclass(frozen=True)
class PhasePlan:
    """initial: the weights the phase starts from (and its KL reference);
    resume_step: the phase's own latest checkpoint step to continue from, or None."""

    initial: WeightSource
    resume_step: int | None


def plan_phase(
    own_dir: str | os.PathLike | None,
    earlier_dirs: Sequence[str | os.PathLike],
    resume_from: str,
    hf_dir: str,
) -> PhasePlan:
    """Where a phase's weights come from. Read top to bottom; the first rule that holds wins.

    1. The phase's own checkpoint directory holds a step: the phase was interrupted and
       continues from it (params, optimizer, data position), whatever else is set.
    2. An earlier phase of this run (``earlier_dirs``, in run order) has a checkpoint: the
       phase starts from the latest one's weights (RecOne's GRPO starts from its SFT).
    3. ``checkpoint.resume_from``: an Orbax checkpoint directory (its latest step) or one of
       its step folders; an error naming the path if it holds no checkpoint.
    4. ``model.hf_dir``: Hugging Face weights (an error naming the path if missing).
    5. Scratch: random initialisation from the seed.

    Rules 2-5 give ``initial``, the weights the phase started from, also when it resumes
    (rule 1): the KL reference of GRPO is those weights, never the resumed ones.
    Paths may be local or remote; ``WeightSource.path`` is an ``epath.Path``.
    """
    own = checkpoint_steps(own_dir) if own_dir is not None else []
    resume_step = own[-1] if own else None
    for directory in reversed(list(earlier_dirs)):
        steps = checkpoint_steps(directory)
        if steps:
            source = WeightSource("phase", paths.as_path(directory), steps[-1])
            return PhasePlan(source, resume_step)
    if resume_from:
        path = paths.as_path(resume_from)
        steps = checkpoint_steps(path)
        if steps:
            return PhasePlan(WeightSource("resume_from", path, steps[-1]), resume_step)
        if path.name.isdigit() and int(path.name) in checkpoint_steps(path.parent):
            return PhasePlan(WeightSource("resume_from", path.parent, int(path.name)), resume_step)
        raise ConfigError(
            f"config.checkpoint.resume_from: {str(path)!r} holds no Orbax checkpoint (expected "
            "finished step folders such as <dir>/1000, or a path to one of them)"
        )
    if hf_dir:
        if not paths.as_path(hf_dir).is_dir():
            raise ConfigError(f"config.model.hf_dir: {hf_dir!r} is not a directory")
        return PhasePlan(WeightSource("hf", paths.as_path(hf_dir)), resume_step)
    return PhasePlan(WeightSource("scratch"), resume_step)


# ---------------------------------------------------------------------------------- engine
@dataclasses.dataclass(frozen=True, eq=False)
class Engine:
    """A model ready to load weights and sample.

    Attributes:
      settings: the run's settings (the model, sampling and seed sections are read).
      mesh: ('data', 'fsdp', 'tensor').
      model_config: the architecture.
      tokenizer / tokenizer_dir: the tokenizer and the local folder it was loaded from (a
        local copy when the configured folder is remote).
      hf_dir: the Hugging Face folder of the architecture (as configured, maybe remote), or
        None (scratch shapes).
      eos_ids / pad_id: end-of-answer ids and the padding id.
      token_bytes: each id's UTF-8 bytes (stop strings, rewards).
    """

    settings: Settings
    mesh: Mesh
    model_config: ModelConfig
    tokenizer: Any
    tokenizer_dir: pathlib.Path
    hf_dir: epath.Path | None
    eos_ids: tuple[int, ...]
    pad_id: int
    token_bytes: TokenBytes

    @property
    def dtype(self):
        return DTYPES[self.settings.model.dtype]

    @property
    def param_dtype(self):
        return DTYPES[self.settings.model.param_dtype]

    def weights(self, source: WeightSource, rules: sharding.Rules = sharding.TRAIN_RULES):
        """The params of ``source``, created or read directly in their sharded layout."""
        if source.kind == "scratch":
            key = jax.random.key(self.settings.seed)
            return init_params(self.model_config, self.mesh, rules, key, self.param_dtype)
        target = self.abstract_weights(rules)
        if source.kind == "hf":  # a remote folder's weights are copied locally (once)
            shardings = jax.tree.map(lambda t: t.sharding, target)
            return load_hf_params(source.path, self.model_config, shardings, self.param_dtype)
        restored, _ = restore_checkpoint(source.path, source.step, {"params": target}, True)
        return restored["params"]

    def abstract_weights(self, rules: sharding.Rules = sharding.TRAIN_RULES):
        """The params as ShapeDtypeStructs with their shardings: nothing is read or made."""
        return sharded_param_shapes(self.model_config, self.mesh, rules, self.param_dtype)

    def sampler(
        self, *, greedy: bool | None = None, max_new_tokens: int | None = None, seed=None
    ) -> GroupSampler:
        """A sampler with the ``sampling`` section's settings; ``greedy`` and
        ``max_new_tokens`` override its method and budget (evaluation is greedy,
        rollouts sample, traces have their own budget)."""
        s = self.settings.sampling
        spec = sampler_spec(s, self.eos_ids, self.pad_id, greedy, max_new_tokens)
        stop = StopStrings.build(list(s.stop_strings), self.token_bytes)
        seed = self.settings.seed if seed is None else seed
        return GroupSampler(self.model_config, self.mesh, spec, stop, self.dtype, seed)


def sampler_spec(
    sampling: SamplingSettings,
    eos_ids: tuple[int, ...],
    pad_id: int,
    greedy: bool | None = None,
    max_new_tokens: int | None = None,
) -> SamplerSpec:
    """The ``sampling`` section as a SamplerSpec; ``greedy`` / ``max_new_tokens`` override
    its method and budget."""
    greedy = sampling.method == "greedy" if greedy is None else greedy
    method = Greedy() if greedy else Sampling(sampling.temperature, sampling.top_k, sampling.top_p)
    return SamplerSpec(
        max_new_tokens=sampling.max_new_tokens if max_new_tokens is None else max_new_tokens,
        method=method,
        eos_ids=tuple(eos_ids),
        pad_id=pad_id,
        buckets=sampling.prompt_buckets,
        unroll_layers=DECODE_LOOPS[sampling.decode_loop],
        cache_phases=sampling.cache_phases,
    )


def build_mesh(settings: Settings) -> Mesh:
    try:
        return sharding.make_mesh(settings.mesh.shape)
    except sharding.ShardingError as e:
        raise ConfigError(f"config.mesh.shape: {e}") from None


def check_attention_kernel(settings: Settings, mesh: Mesh) -> None:
    """``model.attention='cudnn'`` needs the mesh's devices to be NVIDIA GPUs."""
    platforms = {d.platform for d in mesh.devices.flat}
    if settings.model.attention == "cudnn" and platforms != {"gpu"}:
        raise ConfigError(
            f"config.model.attention: 'cudnn' runs on NVIDIA GPUs only, but this run's devices "
            f"are {sorted(platforms)}; use model.attention='einsum'"
        )


def check_mesh_fits_model(mesh: Mesh, config: ModelConfig) -> None:
    """Every tensor-parallel dimension must divide by mesh.tensor (named in the error)."""
    tp = mesh.shape["tensor"]
    for name, size in (
        ("num_attention_heads", config.num_heads),
        ("num_key_value_heads", config.num_kv_heads),
        ("intermediate_size", config.intermediate_size),
        ("vocab_size", config.vocab_size),
    ):
        if size % tp:
            raise ConfigError(
                f"config.mesh.shape: tensor={tp} does not divide the model's {name}={size}; "
                f"choose a tensor size that divides it"
            )


def scratch_config(scratch: ScratchModel, tokenizer) -> ModelConfig:
    """A Qwen2-style architecture of the ``model.scratch`` shapes for ``tokenizer``."""
    return ModelConfig(
        model_type="qwen2",
        vocab_size=-(-len(tokenizer) // 64) * 64,
        hidden_size=scratch.hidden_size,
        intermediate_size=scratch.intermediate_size,
        num_layers=scratch.num_layers,
        num_heads=scratch.num_heads,
        num_kv_heads=scratch.num_kv_heads,
        head_dim=scratch.head_dim,
        qkv_bias=True,
        tie_word_embeddings=True,
        max_position_embeddings=8192,
        bos_token_id=pad_token_id(tokenizer),
        eos_token_ids=(tokenizer.eos_token_id,),
    )


def _tokenizer_dir(settings: Settings, corpus: Callable[[], list[str]] | None) -> pathlib.Path:
    """The local folder of ``model.tokenizer_dir``; else of ``model.hf_dir``; else a
    byte-level BPE trained offline on ``corpus()`` (or a small built-in corpus) and kept
    under ``workdir/tokenizer``. A remote folder is copied to a local one."""
    m = settings.model
    if m.tokenizer_dir or m.hf_dir:
        return paths.local_copy(m.tokenizer_dir or m.hf_dir, HF_SMALL_FILES)
    out = paths.as_path(settings.workdir or tempfile.mkdtemp()) / "tokenizer"
    if multihost.is_primary() and not (out / "tokenizer.json").is_file():  # process 0 trains it
        texts = corpus() if corpus is not None else None
        with paths.writing_to(out) as local:
            build_tiny_tokenizer(local, corpus=texts, vocab_size=m.scratch.tokenizer_vocab_size)
    multihost.barrier("tokenizer")  # the others read it once it is written
    return paths.local_copy(out)


def build_engine(settings: Settings, corpus: Callable[[], list[str]] | None = None) -> Engine:
    """Mesh, tokenizer, model config and byte table from ``settings``.

    The architecture is ``model.hf_dir``'s ``config.json``, or the ``model.scratch`` shapes
    when it is empty; ``corpus`` gives the texts a scratch model's tokenizer is trained on.
    """
    mesh = build_mesh(settings)
    check_attention_kernel(settings, mesh)
    hf_dir = paths.as_path(settings.model.hf_dir) if settings.model.hf_dir else None
    tokenizer_dir = _tokenizer_dir(settings, corpus)
    tokenizer = load_tokenizer(tokenizer_dir)
    hf_local = paths.local_copy(hf_dir, HF_SMALL_FILES) if hf_dir is not None else None
    if hf_local is not None:
        config = ModelConfig.from_hf_dir(hf_local)
    else:
        config = scratch_config(settings.model.scratch, tokenizer)
    check_mesh_fits_model(mesh, config)
    if len(tokenizer) > config.vocab_size:
        raise ConfigError(
            f"config.model.tokenizer_dir: the tokenizer has {len(tokenizer)} tokens but the "
            f"model's vocab_size is {config.vocab_size}"
        )
    eos = eos_token_ids(tokenizer, hf_local) or config.eos_token_ids
    return Engine(
        settings=settings,
        mesh=mesh,
        model_config=config,
        tokenizer=tokenizer,
        tokenizer_dir=tokenizer_dir,
        hf_dir=hf_dir,
        eos_ids=tuple(eos),
        pad_id=pad_token_id(tokenizer),
        token_bytes=token_byte_table(tokenizer, config.vocab_size),
    )


def device_summary(mesh: Mesh) -> str:
    devices = mesh.devices.flat
    kind = next(iter(devices)).device_kind
    return f"{mesh.size} x {kind} ({jax.default_backend()}), mesh {dict(mesh.shape)}"
