"""Everything the training modes share: data, tokenizer, model, prompt sets, reward table.

Built once per run by :func:`prepare_run`, before anything is compiled; every check that
can fail on the user's input (paths, shapes against the mesh, tokenizer against the
model) fails here, naming the config key.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from reczero_jax import sharding
from reczero_jax.config_parsing import ConfigError
from reczero_jax.data.examples import Example
from reczero_jax.data.loader import LoadedData, load_data
from reczero_jax.data.prompts import build_prompt
from reczero_jax.engine import DTYPES, build_mesh, check_mesh_fits_model, sampler_spec
from reczero_jax.model.model_config import ModelConfig
from reczero_jax.rewards import ByteTable, RewardSpec
from reczero_jax.sampling.sampler import GroupSampler
from reczero_jax.settings import Settings
from reczero_jax.text.stop_strings import StopStrings
from reczero_jax.text.tiny_tokenizer import build_tiny_tokenizer
from reczero_jax.text.token_bytes import token_byte_table
from reczero_jax.text.tokenizer import eos_token_ids, load_tokenizer, pad_token_id

STOP_STRING = "</rate>"  # every answer format ends with the <rate> block


class PromptSet:
    """The tokenized prompts of one split, built lazily (a GRPO run touches a fraction).

    Attributes:
      examples: the split's examples; targets / fallbacks: float32 [N] true ratings and
        the strict-metric fallback (the user's average rating shown in the prompt).
    """

    def __init__(self, examples: list[Example], tokenizer, prompt_cfg):
        self.examples = examples
        self.targets = np.asarray([e.rating for e in examples], np.float32)
        self.fallbacks = np.asarray([e.user_avg_rating for e in examples], np.float32)
        self._tokenizer, self._cfg = tokenizer, prompt_cfg
        self._ids: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.examples)

    def ids(self, i: int) -> list[int]:
        if i not in self._ids:
            self._ids[i] = list(
                build_prompt(self.examples[i], self._tokenizer, self._cfg).token_ids
            )
        return self._ids[i]

    def text(self, i: int) -> str:
        return build_prompt(self.examples[i], self._tokenizer, self._cfg).text


@dataclasses.dataclass
class Run:
    """The pieces of one training / evaluation run."""

    settings: Settings
    mesh: Mesh
    data: LoadedData
    tokenizer: Any
    tokenizer_dir: pathlib.Path
    model_config: ModelConfig
    hf_dir: pathlib.Path | None
    dtype: Any
    param_dtype: Any
    eos_ids: tuple[int, ...]
    pad_id: int
    stop: StopStrings
    reward_table: ByteTable
    reward_spec: RewardSpec
    splits: dict[str, PromptSet]

    @property
    def workdir(self) -> pathlib.Path:
        return pathlib.Path(self.settings.workdir)


def _data_tokenizer(data: LoadedData, settings: Settings, out_dir: pathlib.Path) -> pathlib.Path:
    """A byte-level BPE tokenizer trained offline on the run's own texts (scratch models)."""
    if (out_dir / "tokenizer.json").is_file():
        return out_dir
    from reczero_jax.data.prompts import INSTRUCTIONS, format_inputs

    rng = np.random.default_rng(settings.seed)
    train = data.examples["train"]
    pick = rng.choice(len(train), size=min(len(train), 2000), replace=False)
    corpus = [INSTRUCTIONS[settings.data.prompt.variant]]
    for i in pick:
        corpus.append(format_inputs(train[i]))
    if data.world is not None:
        from reczero_jax.data.teacher import teacher_trace

        for i in pick[:1000]:
            corpus.append(
                teacher_trace(train[i], data.world, rng, 0.0, settings.data.prompt.variant)
            )
    return build_tiny_tokenizer(
        out_dir, corpus=corpus, vocab_size=settings.model.scratch.tokenizer_vocab_size
    )


def scratch_config(settings: Settings, tokenizer) -> ModelConfig:
    s = settings.model.scratch
    vocab = -(-len(tokenizer) // 64) * 64
    return ModelConfig(
        model_type="qwen2",
        vocab_size=vocab,
        hidden_size=s.hidden_size,
        intermediate_size=s.intermediate_size,
        num_layers=s.num_layers,
        num_heads=s.num_heads,
        num_kv_heads=s.num_kv_heads,
        head_dim=s.head_dim,
        qkv_bias=True,
        tie_word_embeddings=True,
        max_position_embeddings=8192,
        bos_token_id=pad_token_id(tokenizer),
        eos_token_ids=(tokenizer.eos_token_id,),
    )


def prepare_run(settings: Settings) -> Run:
    workdir = pathlib.Path(settings.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mesh = build_mesh(settings)
    data = load_data(settings.data)
    hf_dir = pathlib.Path(settings.model.hf_dir) if settings.model.hf_dir else None
    if hf_dir is not None:
        config = ModelConfig.from_hf_dir(hf_dir)
        tokenizer_dir = pathlib.Path(settings.model.tokenizer_dir or hf_dir)
        tokenizer = load_tokenizer(tokenizer_dir)
    else:
        tokenizer_dir = (
            pathlib.Path(settings.model.tokenizer_dir)
            if settings.model.tokenizer_dir
            else _data_tokenizer(data, settings, workdir / "tokenizer")
        )
        tokenizer = load_tokenizer(tokenizer_dir)
        config = scratch_config(settings, tokenizer)
    check_mesh_fits_model(mesh, config)
    if len(tokenizer) > config.vocab_size:
        raise ConfigError(
            f"config.model.tokenizer_dir: the tokenizer has {len(tokenizer)} tokens but the "
            f"model's vocab_size is {config.vocab_size}"
        )
    shards = sharding.batch_shards(mesh)
    for key, groups in (
        ("grpo.prompts_per_step", settings.grpo.prompts_per_step),
        ("sft.batch_size", settings.sft.batch_size),
        ("eval.batch_size", settings.eval.batch_size),
    ):
        if groups % shards:
            raise ConfigError(
                f"config.{key}={groups} must be a multiple of the batch shards "
                f"(mesh data x fsdp = {shards})"
            )
    table = token_byte_table(tokenizer, config.vocab_size)
    variant = settings.data.prompt.variant
    eos = eos_token_ids(tokenizer, hf_dir) or config.eos_token_ids
    splits = {
        name: PromptSet(examples, tokenizer, settings.data.prompt)
        for name, examples in data.examples.items()
    }
    return Run(
        settings=settings,
        mesh=mesh,
        data=data,
        tokenizer=tokenizer,
        tokenizer_dir=tokenizer_dir,
        model_config=config,
        hf_dir=hf_dir,
        dtype=DTYPES[settings.model.dtype],
        param_dtype=DTYPES[settings.model.param_dtype],
        eos_ids=tuple(eos),
        pad_id=pad_token_id(tokenizer),
        stop=StopStrings.build([STOP_STRING], table),
        reward_table=ByteTable.build(table),
        # the reward grammar's formats are named like the prompt variants
        reward_spec=RewardSpec(variant, settings.grpo.reward_preset),
        splits=splits,
    )


def initial_params(run: Run, key: jax.Array):
    """HF weights (``model.hf_dir``) or a scratch init, created sharded for training."""
    from reczero_jax.hf.checkpoint import load_hf_params
    from reczero_jax.model.params import init_params, param_shardings

    if run.hf_dir is not None:
        shardings = param_shardings(
            run.model_config, run.mesh, sharding.TRAIN_RULES, run.param_dtype
        )
        return load_hf_params(run.hf_dir, run.model_config, shardings, dtype=run.param_dtype)
    return init_params(run.model_config, run.mesh, sharding.TRAIN_RULES, key, run.param_dtype)


def batch_indices(num_examples: int, batch: int, step: int, seed: int) -> np.ndarray:
    """The example indices of training step ``step``: epoch-wise permutations derived from
    (seed, epoch), consumed ``batch`` at a time. Pure function of its arguments, so a
    resumed run (or each host of a pod, taking its slice) sees the same order."""
    out = []
    pos = step * batch
    while len(out) < batch:
        epoch, offset = divmod(pos, num_examples)
        order = np.random.default_rng([seed, epoch]).permutation(num_examples)
        take = min(batch - len(out), num_examples - offset)
        out.extend(order[offset : offset + take].tolist())
        pos += take
    return np.asarray(out, np.int64)


def make_sampler(
    run: Run, greedy: bool, max_new_tokens: int, seed: int | None = None
) -> GroupSampler:
    """The run's sampler: greedy (evaluation) or the config's sampling method (rollouts,
    self-generated traces), with the run's EOS / stop strings and compute dtype."""
    spec = sampler_spec(
        run.settings.sampling,
        run.eos_ids,
        run.pad_id,
        greedy=greedy,
        max_new_tokens=max_new_tokens,
    )
    seed = run.settings.seed if seed is None else seed
    return GroupSampler(run.model_config, run.mesh, spec, stop=run.stop, dtype=run.dtype, seed=seed)
