"""Hugging Face TRL's ``GRPOTrainer`` (trl 1.16.0) on the shared checkpoint, CPU, float32.

Settings of ``../shared/docs/peers.md``: ``use_cpu``, no bf16 / fp16, no gradient
checkpointing, ``loss_type='grpo'``, beta 0, no vLLM, no shuffling, B x G completions per
device batch (one optimizer step per GRPO step), temperature 1, ``min_new_tokens`` = T so
that EOS never ends an answer, torch threads = the CPU count. The reward reads
``completion_ids``. A ``TrainerCallback`` times whole steps; wrapping the trainer's
``_generate_and_score_completions`` (rollout: generation, reward, advantages) and
``_generate_single_turn`` (generation alone) times the phases.

    python benchmarks/peers/run_trl.py --spec SPEC.json --out RESULT.json
"""

from __future__ import annotations

import functools
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import peer_common  # noqa: E402


def main() -> int:
    args = peer_common.parse_args(__doc__.split("\n\n")[0])
    spec = peer_common.load_spec(args.spec)

    import datasets
    import numpy as np
    import torch
    import transformers
    import trl

    torch.set_num_threads(spec["threads"])
    shape = spec["shape"]
    b, g, t = shape["prompts"], shape["generations"], shape["new_tokens"]
    total = spec["warmup"] + spec["steps"]
    model_dir = spec["model_dir"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(spec["tokenizer_dir"])
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

    # the prompts' text must give back exactly the benchmark's ids
    for ids, text in zip(spec["prompt_ids"], spec["prompt_texts"], strict=True):
        if tokenizer(text, add_special_tokens=False)["input_ids"] != ids:
            raise SystemExit("trl: a prompt's text does not tokenize to its ids")

    def reward(prompts=None, completions=None, completion_ids=None, **kwargs):
        return [peer_common.reward_of_ids(ids, spec["reward"]) for ids in completion_ids]

    config = trl.GRPOConfig(
        output_dir=str(pathlib.Path(model_dir).parent / "trl_out"),
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        loss_type="grpo",
        beta=0.0,
        epsilon=spec["epsilon"],
        use_vllm=False,
        shuffle_dataset=False,
        num_generations=g,
        max_completion_length=t,
        generation_kwargs={"min_new_tokens": t},
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        per_device_train_batch_size=b * g,
        gradient_accumulation_steps=1,
        num_iterations=1,
        max_steps=total,
        learning_rate=spec["learning_rate"],
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=spec["grad_clip"],
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=spec["seed"],
        dataloader_num_workers=0,
    )
    dataset = datasets.Dataset.from_dict({"prompt": spec["prompt_texts"] * total})
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
    )

    probe = torch.from_numpy(np.load(spec["parity"]["ids"]))
    with torch.no_grad():
        logits = trainer.model.eval()(input_ids=probe).logits.float().numpy()
    trainer.model.train()
    diff = peer_common.parity_diff(logits, spec)
    peer_common.check_parity("trl", diff)

    times = peer_common.StepTimes()
    lengths: list[int] = []

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            tick = time.perf_counter()
            out = fn(*a, **kw)
            times.add(name, time.perf_counter() - tick)
            if name == "generate":
                lengths.extend(len(c) for c in out[0])
            return out

        return wrapper

    trainer._generate_and_score_completions = timed(
        "rollout", trainer._generate_and_score_completions
    )
    trainer._generate_single_turn = timed("generate", trainer._generate_single_turn)

    class StepTimer(transformers.TrainerCallback):
        def on_step_begin(self, *a, **kw):
            times.begin()

        def on_step_end(self, *a, **kw):
            times.end()

    trainer.add_callback(StepTimer())
    trainer.train()
    peer_common.check_full_run("trl", len(times.steps), total, lengths, t)
    for s in times.steps:
        s["update"] = s["step"] - s.get("rollout", 0.0)
    result = {
        "system": "trl",
        "parity_max_abs_diff": diff,
        "torch_threads": torch.get_num_threads(),
        **times.summary(spec["warmup"]),
        "versions": peer_common.versions("trl", "transformers", "torch", "accelerate", "datasets"),
    }
    peer_common.write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
