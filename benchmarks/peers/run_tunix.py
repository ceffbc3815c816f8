"""google-tunix's ``GRPOLearner`` (google-tunix 0.1.7, Flax NNX) on the shared checkpoint.

Runs in tunix's OWN venv (it needs ``safetensors<0.8``; see ``benchmarks/grpo_vs_peers.py``),
so it imports nothing of this project. As ``../shared/docs/peers.md`` gives it: the
Qwen2 ``ModelConfig`` built by hand from ``config.json``, weights read with
``create_model_from_safe_tensors`` on a ``(1, 1)`` ('fsdp', 'tp') mesh (Auto axes) shared by actor,
reference and rollout (so rollout and training share the model and run one after the
other), the vanilla rollout engine with ``max_prompt_length`` = P and ``kv_cache_size`` =
P + T, EOS id ``vocab_size`` (never sampled: every answer runs to T tokens), beta 0, one
optimizer update per step (the whole batch as one mini-batch). The optimizer is set to
the others' (AdamW, no weight decay, global-norm clip). tunix has no per-step callback,
so its private ``_run_global_step`` (the step), ``_generate_and_compute_advantage``
(rollout: generation, reward, advantages), ``RLCluster.generate`` (generation) and
``RLCluster.update_actor`` (update) are wrapped with timers (names of 0.1.7).

    /work/tunix-venv/bin/python benchmarks/peers/run_tunix.py --spec SPEC.json --out RESULT.json
"""

from __future__ import annotations

import functools
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import peer_common  # noqa: E402


def model_config(model_dir: str):
    """tunix's Qwen2 ModelConfig of a transformers ``config.json`` (float32)."""
    from tunix.models.qwen2 import model as qwen2

    hf = json.loads((pathlib.Path(model_dir) / "config.json").read_text())
    rope = hf.get("rope_theta") or (hf.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    return qwen2.ModelConfig(
        num_layers=hf["num_hidden_layers"],
        vocab_size=hf["vocab_size"],
        embed_dim=hf["hidden_size"],
        hidden_dim=hf["intermediate_size"],
        num_heads=hf["num_attention_heads"],
        head_dim=hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"],
        num_kv_heads=hf["num_key_value_heads"],
        rope_theta=rope,
        norm_eps=hf["rms_norm_eps"],
        use_tied_embedding=hf["tie_word_embeddings"],
    )


def main() -> int:
    args = peer_common.parse_args(__doc__.split("\n\n")[0])
    spec = peer_common.load_spec(args.spec)

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import transformers
    from flax import nnx
    from tunix.models.qwen2 import params as qwen2_params
    from tunix.rl import rl_cluster as rl_cluster_lib
    from tunix.rl.grpo.grpo_learner import GRPOConfig, GRPOLearner
    from tunix.rl.rollout import base_rollout

    shape = spec["shape"]
    b, g, t, p = shape["prompts"], shape["generations"], shape["new_tokens"], shape["prompt_len"]
    total = spec["warmup"] + spec["steps"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(spec["tokenizer_dir"])
    for ids, text in zip(spec["prompt_ids"], spec["prompt_texts"], strict=True):
        if tokenizer.encode(text) != ids:  # what tunix's sampler calls (no BOS: none is set)
            raise SystemExit("tunix: a prompt's text does not tokenize to its ids")
    if tokenizer.bos_token_id:
        raise SystemExit("tunix: the tokenizer has a BOS id, tunix would prepend it")

    config = model_config(spec["model_dir"])
    # Auto axes, as tunix's own mesh helper (tunix.utils.mesh) makes them: jax 0.10's default
    # Explicit axes reject the embedding gather of tunix's Qwen2
    mesh = jax.make_mesh((1, 1), ("fsdp", "tp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    model = qwen2_params.create_model_from_safe_tensors(spec["model_dir"], config, mesh)

    probe = jnp.asarray(np.load(spec["parity"]["ids"]), jnp.int32)
    r, length = probe.shape
    positions = jnp.broadcast_to(jnp.arange(length), (r, length))
    causal = jnp.broadcast_to(jnp.tril(jnp.ones((length, length), bool)), (r, length, length))
    with mesh:  # as tunix runs its models
        logits, _ = model(probe, positions, None, causal)
    diff = peer_common.parity_diff(np.asarray(logits), spec)
    peer_common.check_parity("tunix", diff)

    optimizer = optax.chain(
        optax.clip_by_global_norm(spec["grad_clip"]),
        optax.adamw(spec["learning_rate"], weight_decay=0.0),
    )
    training = rl_cluster_lib.RLTrainingConfig(
        actor_optimizer=optimizer,
        eval_every_n_steps=10**9,
        max_steps=total,
        mini_batch_size=b,
        train_micro_batch_size=b,
    )
    rollout = base_rollout.RolloutConfig(
        max_tokens_to_generate=t,
        max_prompt_length=p,
        kv_cache_size=p + t,
        temperature=1.0,
        top_p=1.0,
        top_k=None,
        eos_tokens=[config.vocab_size],  # never sampled: answers run to t tokens
    )
    roles = rl_cluster_lib.Role
    cluster = rl_cluster_lib.RLCluster(
        actor=model,
        reference=None,
        tokenizer=tokenizer,
        cluster_config=rl_cluster_lib.ClusterConfig(
            role_to_mesh={roles.ACTOR: mesh, roles.REFERENCE: mesh, roles.ROLLOUT: mesh},
            rollout_engine="vanilla",
            offload_to_cpu=False,
            training_config=training,
            rollout_config=rollout,
        ),
    )

    def reward(prompts, completions, **kwargs):
        return [
            peer_common.reward_of_ids(tokenizer.encode(c, add_special_tokens=False), spec["reward"])
            for c in completions
        ]

    algo = GRPOConfig(num_generations=g, num_iterations=1, beta=0.0, epsilon=spec["epsilon"])
    learner = GRPOLearner(rl_cluster=cluster, algo_config=algo, reward_fns=[reward])

    times = peer_common.StepTimes()
    lengths: list[int] = []

    def timed(name, fn, sync=None):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            if name == "step":
                times.begin()
            tick = time.perf_counter()
            out = fn(*a, **kw)
            if sync is not None:
                jax.block_until_ready(sync())
            if name == "step":
                times.end()
            else:
                times.add(name, time.perf_counter() - tick)
            if name == "generate":
                lengths.extend(len(x) for x in out.tokens)
            return out

        return wrapper

    def actor_state():
        return nnx.state(cluster.actor_trainer.model)

    learner._run_global_step = timed("step", learner._run_global_step, actor_state)
    learner._generate_and_compute_advantage = timed(
        "rollout", learner._generate_and_compute_advantage
    )
    cluster.generate = timed("generate", cluster.generate)
    cluster.update_actor = timed("update", cluster.update_actor, actor_state)

    dataset = [{"prompts": np.array(spec["prompt_texts"])} for _ in range(total)]
    learner.train(dataset)
    peer_common.check_full_run("tunix", len(times.steps), total, lengths, t)
    result = {
        "system": "tunix",
        "parity_max_abs_diff": diff,
        **times.summary(spec["warmup"]),
        "versions": peer_common.versions("google-tunix", "jax", "flax", "optax", "transformers"),
    }
    peer_common.write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
