"""MetricWriter: JSONL + TensorBoard content, non-finite values, scalar types, process gating."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from reczero_jax.observe import MetricWriter, read_jsonl, read_scalars


def test_jsonl_and_tensorboard_round_trip(tmp_path):
    with MetricWriter(tmp_path, enabled=True) as w:
        w.write(1, {"reward/mean": 0.5, "perf/rollout_tokens_per_s": 1000, "format/valid_frac": 1})
        w.write(2, {"reward/mean": np.float32(0.75), "train/loss": jnp.asarray(0.125)})
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert all(isinstance(r["time"], float) for r in records)
    assert records[0]["perf/rollout_tokens_per_s"] == 1000
    assert isinstance(records[0]["perf/rollout_tokens_per_s"], int)
    assert records[1] == {**records[1], "reward/mean": 0.75, "train/loss": 0.125}
    scalars = read_scalars(tmp_path / "tensorboard")
    assert scalars == {
        "reward/mean": [(1, 0.5), (2, 0.75)],
        "perf/rollout_tokens_per_s": [(1, 1000.0)],
        "format/valid_frac": [(1, 1.0)],
        "train/loss": [(2, 0.125)],
    }


def test_non_finite_values_are_null_in_json_and_skipped_in_tb(tmp_path):
    with MetricWriter(tmp_path, enabled=True) as w:
        w.write(3, {"a": float("nan"), "b": np.float32("inf"), "c": -math.inf, "d": 2.0})
    line = (tmp_path / "metrics.jsonl").read_text().strip()
    assert "NaN" not in line and "Infinity" not in line  # strict JSON
    record = json.loads(line)
    assert record["a"] is None and record["b"] is None and record["c"] is None
    assert record["d"] == 2.0
    assert read_scalars(tmp_path / "tensorboard") == {"d": [(3, 2.0)]}


def test_appends_across_writers_and_repeats_steps(tmp_path):
    with MetricWriter(tmp_path, enabled=True) as w:
        w.write(1, {"x": 1.0})
        w.write(2, {"x": 2.0})
    with MetricWriter(tmp_path, enabled=True) as w:  # a resumed run logs step 2 again
        w.write(2, {"x": 2.5})
    assert [(r["step"], r["x"]) for r in read_jsonl(tmp_path / "metrics.jsonl")] == [
        (1, 1.0),
        (2, 2.0),
        (2, 2.5),
    ]
    assert len(list((tmp_path / "tensorboard").iterdir())) == 2


def test_disabled_writer_writes_nothing(tmp_path):
    workdir = tmp_path / "run"
    w = MetricWriter(workdir, enabled=False)
    w.write(1, {"x": 1.0})
    w.flush()
    w.close()
    assert not workdir.exists()


def test_default_enabled_is_process_zero(tmp_path):
    with MetricWriter(tmp_path) as w:  # a single-process test run is process 0
        assert w.enabled


@pytest.mark.parametrize(
    ("metrics", "error"),
    [
        ({"step": 1.0}, ValueError),
        ({"x": "high"}, TypeError),
        ({"x": np.zeros(3)}, TypeError),
        ({"": 1.0}, ValueError),
    ],
)
def test_bad_metrics_raise_and_write_nothing(tmp_path, metrics, error):
    with MetricWriter(tmp_path, enabled=True) as w, pytest.raises(error):
        w.write(1, metrics)
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_write_after_close_raises(tmp_path):
    w = MetricWriter(tmp_path, enabled=True)
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write(1, {"x": 1.0})


def test_read_jsonl_skips_a_torn_line_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "x": 1.0}\n{"step": 2, "x": 2.0}\n{"step": 3, "x":')
    assert [r["step"] for r in read_jsonl(path)] == [1, 2]  # a run killed mid-write
    assert "line 3 is not JSON; skipped" in caplog.text
