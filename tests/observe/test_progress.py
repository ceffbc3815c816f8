"""Progress bar gating and the phase timer."""

import time

from reczero_jax.observe import PhaseTimer, Progress


def test_progress_disabled_when_not_a_tty(capsys):
    p = Progress(10, "train")  # pytest captures stderr: not a TTY
    assert not p.enabled
    p.update(3, loss=0.5)
    p.close()
    assert capsys.readouterr().err == ""


def test_progress_enabled_draws_to_stderr(capsys):
    with Progress(10, "train", initial=2, enabled=True) as p:
        p.update(5, loss=0.123456, step_s=2)
        assert p._bar.n == 5
    err = capsys.readouterr().err
    assert "train" in err and "loss=0.1235" in err


def test_phase_timer_accumulates_and_resets():
    timer = PhaseTimer()
    with timer.phase("rollout"):
        time.sleep(0.01)
    with timer.phase("update"):
        pass
    with timer.phase("rollout"):
        time.sleep(0.01)
    out = timer.pop()
    assert list(out) == ["time/rollout_s", "time/update_s"]
    assert out["time/rollout_s"] >= 0.02
    assert 0 <= out["time/update_s"] < out["time/rollout_s"]
    assert timer.pop() == {}


def test_phase_timer_counts_time_when_the_body_raises():
    timer = PhaseTimer()
    try:
        with timer.phase("eval"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert "time/eval_s" in timer.pop()
