"""What the three GRPO-step workers share (standard library and numpy only: the tunix
worker runs in its own venv, without this project installed).

A worker is started as ``python <worker> --spec SPEC.json --out RESULT.json``. The spec
(written by ``benchmarks/grpo_vs_peers.py``) names the shared checkpoint folder (weights
and tokenizer), the prompt token ids and their text, the shape, the step counts, the
reward and the parity probe; the worker writes one JSON object of results.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import time

import numpy as np

PARITY_TOL = 1e-4  # max |logit difference| against transformers, float32


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--spec", required=True, help="the benchmark's spec.json")
    parser.add_argument("--out", required=True, help="where to write this worker's JSON")
    return parser.parse_args()


def load_spec(path: str | os.PathLike) -> dict:
    return json.loads(pathlib.Path(path).read_text())


def write_result(path: str | os.PathLike, result: dict) -> None:
    result = dict(result)
    result.setdefault("peak_rss_mb", peak_rss_mb())
    # glibc's malloc settings the process ran with (ours: glibc.malloc.hugetlb=1, which
    # reczero_jax.main sets; the peers: the parent's, plus it under --peers-huge-pages)
    result.setdefault("glibc_tunables", os.environ.get("GLIBC_TUNABLES", ""))
    pathlib.Path(path).write_text(json.dumps(result, indent=1))


# ------------------------------------------------------------------------------- reward
def reward_of_ids(ids, reward: dict) -> float:
    """The benchmark's reward of one answer's token ids (Python; the peers use it).

    ``-|#{t : t >= first_word and t % modulus == residue} - target|``: how far the number
    of answer tokens of one id class is from ``target``. Special ids (below
    ``first_word``) never count, so a text round trip that drops them changes nothing.
    """
    first, mod, res = reward["first_word"], reward["modulus"], reward["residue"]
    count = sum(1 for t in ids if t >= first and t % mod == res)
    return -float(abs(count - reward["target"]))


# -------------------------------------------------------------------------------- parity
def parity_diff(logits, spec: dict) -> float:
    """max |logits - transformers' reference logits| on the parity probe."""
    ref = np.load(spec["parity"]["reference"])
    return float(np.max(np.abs(np.asarray(logits, np.float32) - ref)))


def check_parity(name: str, diff: float) -> None:
    if not np.isfinite(diff) or diff > PARITY_TOL:
        raise SystemExit(
            f"{name}: logits differ from transformers' by {diff:.3e} > {PARITY_TOL:g} on the "
            "shared weights: this system does not run the same model; refusing to time it"
        )


def check_full_run(name: str, steps_run: int, total: int, lengths, new_tokens: int) -> None:
    """Every step ran and every answer has the forced full length, or the run is refused."""
    if steps_run != total:
        raise SystemExit(f"{name}: ran {steps_run} steps, expected {total}")
    if set(lengths) != {new_tokens}:
        raise SystemExit(
            f"{name}: answers of lengths {sorted(set(lengths))}, expected all {new_tokens}"
        )


def versions(*packages: str) -> dict[str, str]:
    import importlib.metadata

    return {name: importlib.metadata.version(name) for name in packages}


# ---------------------------------------------------------------------------- timing
def minor_faults() -> int:
    """This process's minor page faults so far (each a page the kernel mapped, and
    zeroed when fresh, on first touch)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class StepTimes:
    """Per-step seconds by phase ('step', 'rollout', 'generate', 'update'...), and each
    step's minor page faults."""

    def __init__(self):
        self.steps: list[dict[str, float]] = []
        self.faults: list[int] = []
        self._current: dict[str, float] = {}
        self._start = None
        self._faults = 0

    def begin(self) -> None:
        self._current, self._start, self._faults = {}, time.perf_counter(), minor_faults()

    def add(self, phase: str, seconds: float) -> None:
        self._current[phase] = self._current.get(phase, 0.0) + seconds

    def end(self) -> None:
        if self._start is None:
            return
        self._current["step"] = time.perf_counter() - self._start
        self.steps.append(self._current)
        self.faults.append(minor_faults() - self._faults)
        self._start = None

    def summary(self, warmup: int) -> dict:
        """Median and min of every phase over the steps after ``warmup``, the first step
        (compilation included) on its own, and the median minor page faults of a timed
        step."""
        timed = self.steps[warmup:]
        faults = self.faults[warmup:]
        out: dict = {
            "steps_timed": len(timed),
            "first_step_s": round(self.steps[0]["step"], 4) if self.steps else None,
            "per_step": [{k: round(v, 4) for k, v in s.items()} for s in self.steps],
            "minor_faults_per_step": int(statistics.median(faults)) if faults else None,
        }
        return {**out, **phase_stats(timed)}


def phase_stats(steps: list[dict[str, float]]) -> dict:
    """``{phase}_s`` (median) and ``{phase}_min_s`` of every phase over ``steps`` (each a
    step's seconds by phase); empty for no steps."""
    out = {}
    for phase in sorted({k for s in steps for k in s}):
        values = [s[phase] for s in steps if phase in s]
        out[f"{phase}_s"] = round(statistics.median(values), 4)
        out[f"{phase}_min_s"] = round(min(values), 4)
    return out


# ---------------------------------------------------------------------------- memory
def peak_rss_mb() -> float | None:
    """This process's peak resident memory (VmHWM) in MB, or None off Linux."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None
