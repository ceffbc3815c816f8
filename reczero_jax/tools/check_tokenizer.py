"""Checks that the device reward agrees with the reference on a tokenizer's token ids.

    python -m reczero_jax.tools.check_tokenizer --tokenizer DIR [--cases FILE.jsonl]
        [--fmt four_step] [--preset paper] [--max_tokens 512] [--max_bytes B] [--batch_size 64]

Each case ``{"response": str, "target": float}`` (optionally ``expect_valid``,
``expect_rating``, ``expect_reward``) is tokenized without special-token insertion (special
tokens written in the text, e.g. ``<|im_end|>``, map to their ids), cut to ``--max_tokens``
ids, and scored twice: on device (``compute_rewards``, batched and padded to a fixed
[batch_size, max_tokens]) and by the reference on the decoded bytes of the same ids.
Targets are rounded to float32 for both. Counted as disagreements: device vs reference
(valid, reason, rating and reward within 1e-5); reference on the ids vs on the original text
and ``expect_*`` fields vs the device, both only for cases within T tokens and max_bytes. Without
``--cases`` the built-in fuzz corpus (``reczero_jax.rewards.fuzz_corpus``) is used.

The last line reads ``disagreements: K (N cases)``. Exit status: 0 when K = 0, 1 otherwise,
2 (one line on stderr) for a bad tokenizer folder or cases file.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import numpy as np

from reczero_jax.rewards.grammar import FORMATS, PRESETS

TOL = 1e-5
SHOW = 5


class CasesError(ValueError):
    """The cases file is missing or malformed."""


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CasesError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def load_cases(path: str) -> list[dict]:
    """Read a JSONL cases file; raises CasesError naming the file and line."""
    file = pathlib.Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CasesError(f"cannot read cases file {file}: {exc}") from exc
    cases = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"cases file {file} line {number}"
        try:
            case = json.loads(line)
        except ValueError as exc:
            raise CasesError(f"{where}: invalid JSON ({exc})") from exc
        if not isinstance(case, dict) or not isinstance(case.get("response"), str):
            raise CasesError(f"{where}: expected an object with a string 'response'")
        try:
            case["target"] = _number(case.get("target"), "'target'")
            if "expect_valid" in case and not isinstance(case["expect_valid"], bool):
                raise CasesError(
                    f"'expect_valid' must be true or false, got {case['expect_valid']!r}"
                )
            for key in ("expect_rating", "expect_reward"):
                if case.get(key) is not None:
                    case[key] = _number(case[key], f"'{key}'")
        except CasesError as exc:
            raise CasesError(f"{where}: {exc}") from None
        cases.append(case)
    if not cases:
        raise CasesError(f"cases file {file} holds no cases")
    return cases


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= TOL


def _device_results(
    table, rows: list[list[int]], targets: np.ndarray, spec, batch: int, width: int
):
    import jax.numpy as jnp

    from reczero_jax.rewards import compute_rewards

    outs = []
    for lo in range(0, len(rows), batch):
        chunk = rows[lo : lo + batch]
        tokens = np.zeros((batch, width), np.int32)
        lengths = np.zeros((batch,), np.int32)
        tgt = np.zeros((batch,), np.float32)
        for n, ids in enumerate(chunk):
            tokens[n, : len(ids)] = ids
            lengths[n] = len(ids)
            tgt[n] = targets[lo + n]
        out = compute_rewards(
            table, jnp.asarray(tokens), jnp.asarray(lengths), jnp.asarray(tgt), spec
        )
        host = {k: np.asarray(getattr(out, k)) for k in ("valid", "rating", "reward", "reason")}
        outs += [{k: v[n].item() for k, v in host.items()} for n in range(len(chunk))]
    return outs


def _compare(case, dev, ref, ref_reward, text_ref, cut, names) -> list[str]:
    """Disagreement descriptions for one case (empty when all agree)."""
    problems = []
    dev_reason = names[dev["reason"]]
    dev_rating = dev["rating"] if dev["valid"] else None
    if (dev["valid"], dev_reason) != (ref.valid, ref.reason):
        problems.append(f"device {dev_reason} vs reference {ref.reason}")
    elif not _close(dev_rating, ref.rating) or not _close(dev["reward"], ref_reward):
        problems.append(
            f"device rating/reward {dev_rating}/{dev['reward']} "
            f"vs reference {ref.rating}/{ref_reward}"
        )
    if cut:
        return problems
    if (text_ref.valid, text_ref.reason, text_ref.rating) != (ref.valid, ref.reason, ref.rating):
        problems.append(f"text parses as {text_ref.reason}, its token bytes as {ref.reason}")
    if "expect_valid" in case and case["expect_valid"] != dev["valid"]:
        problems.append(f"expect_valid={case['expect_valid']} but device says {dev_reason}")
    if "expect_rating" in case and not _close(case["expect_rating"], dev_rating):
        problems.append(f"expect_rating={case['expect_rating']} but device rating {dev_rating}")
    if case.get("expect_reward") is not None and not _close(case["expect_reward"], dev["reward"]):
        problems.append(f"expect_reward={case['expect_reward']} but device reward {dev['reward']}")
    return problems


def run(args) -> int:
    from reczero_jax.rewards import ByteTable, RewardSpec, parse, reason_names, reward
    from reczero_jax.rewards.fuzz_corpus import fuzz_cases
    from reczero_jax.text import TokenizerError, decode_bytes, load_tokenizer, token_byte_table

    try:
        tokenizer = load_tokenizer(args.tokenizer)
    except TokenizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        cases = load_cases(args.cases) if args.cases else fuzz_cases(args.fmt, args.preset)
    except CasesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    host_table = token_byte_table(tokenizer, len(tokenizer))
    spec = RewardSpec(args.fmt, args.preset, args.max_bytes)
    cap = spec.capacity(args.max_tokens)
    rows, cut = [], []
    for case in cases:
        ids = list(tokenizer.encode(case["response"], add_special_tokens=False))
        too_long = len(case["response"].encode("utf-8")) > cap
        cut.append(len(ids) > args.max_tokens or too_long)
        rows.append(ids[: args.max_tokens])
    targets = np.array([c["target"] for c in cases], np.float32)
    device = _device_results(
        ByteTable.build(host_table), rows, targets, spec, args.batch_size, args.max_tokens
    )

    names = reason_names(args.fmt)
    failures = []
    for i, case in enumerate(cases):
        ref = parse(decode_bytes(host_table, rows[i]), args.fmt, max_bytes=cap)
        ref_reward = reward(ref, float(targets[i]), args.preset)
        text_ref = parse(case["response"], args.fmt, max_bytes=cap)
        problems = _compare(case, device[i], ref, ref_reward, text_ref, cut[i], names)
        if problems:
            failures.append((i, case["response"], problems))

    n_valid = sum(d["valid"] for d in device)
    print(
        f"tokenizer {args.tokenizer}: {len(cases)} cases, fmt={args.fmt}, preset={args.preset}, "
        f"T={args.max_tokens}, max_bytes={cap}; {n_valid} valid, "
        f"{sum(cut)} beyond T tokens or max_bytes"
    )
    for i, response, problems in failures[:SHOW]:
        shown = response if len(response) <= 120 else response[:117] + "..."
        print(f"case {i} {shown!r}: " + "; ".join(problems))
    print(f"disagreements: {len(failures)} ({len(cases)} cases)")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reczero_jax.tools.check_tokenizer", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--tokenizer", required=True, help="local tokenizer folder")
    parser.add_argument("--cases", default=None, help="JSONL file of cases (default: built-in)")
    parser.add_argument("--fmt", default="four_step", choices=sorted(FORMATS))
    parser.add_argument("--preset", default="paper", choices=list(PRESETS))
    parser.add_argument("--max_tokens", type=int, default=512, help="padded length T")
    parser.add_argument("--max_bytes", type=int, default=None, help="stream capacity (8 * T)")
    parser.add_argument("--batch_size", type=int, default=64, help="rows per device batch")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("max_tokens", "batch_size", "max_bytes"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be >= 1, got {value}")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
