"""Mean, bias and MF baselines; the baselines mode end to end."""

import json

import numpy as np
import pytest

from reczero_jax.baselines import BiasModel, MeanModel, fit_mf
from reczero_jax.data.data_config import BaselinesConfig, DataConfig, SyntheticConfig
from reczero_jax.modes import baselines as baselines_mode
from reczero_jax.settings import Settings
from tests.data import sample_files


def test_means_hand_values():
    user, item, rating = np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([1.0, 3.0, 5.0])
    m = MeanModel.fit(user, item, rating, num_users=3, num_items=2)
    assert m.mu == pytest.approx(3.0)
    np.testing.assert_allclose(m.predict_user([0, 1, 2, -1]), [2.0, 5.0, 3.0, 3.0])
    np.testing.assert_allclose(m.predict_item([0, 1]), [1.0, 4.0])


def test_bias_model_hand_values():
    # one sweep, l2 = 1: b_u = sum(r - mu) / (1 + n_u); then b_i with the new b_u
    user, item, rating = np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([1.0, 3.0, 5.0])
    m = BiasModel.fit(user, item, rating, 2, 2, l2=1.0, sweeps=1)
    bu = np.array([(-2 + 0) / 3, 2 / 2])
    bi = np.array([(-2 - bu[0]) / 2, ((0 - bu[0]) + (2 - bu[1])) / 3])
    np.testing.assert_allclose(m.b_user, bu)
    np.testing.assert_allclose(m.b_item, bi)
    np.testing.assert_allclose(m.predict([0, -1], [0, -1]), [np.clip(3 + bu[0] + bi[0], 1, 5), 3])


def test_mf_fits_low_rank_and_stops_early():
    rng = np.random.default_rng(0)
    nu, ni = 60, 40
    p, q = rng.normal(0, 0.8, (nu, 2)), rng.normal(0, 0.8, (ni, 2))
    full = np.clip(3 + p @ q.T, 1, 5)
    mask = rng.random((nu, ni)) < 0.6
    u, i = np.nonzero(mask)
    vu, vi = np.nonzero(~mask)
    kw = dict(l2=1e-3, lr=0.05, batch_size=256, init_std=0.1, seed=0)
    res = fit_mf((u, i, full[u, i]), (vu, vi, full[vu, vi]), nu, ni, dim=4, epochs=60,
                 patience=3, **kw)  # fmt: skip
    rmse = np.sqrt(np.mean((res.predict(vu, vi) - full[vu, vi]) ** 2))
    base = np.sqrt(np.mean((full[u, i].mean() - full[vu, vi]) ** 2))
    assert rmse < 0.5 * base
    assert res.best_epoch == int(np.argmin(res.valid_rmse))
    assert len(res.valid_rmse) <= 60


def _settings(data_cfg, cfg, workdir):
    return Settings(mode="baselines", workdir=str(workdir), data=data_cfg, baselines=cfg)


def test_run_on_synthetic(tmp_path, capsys):
    data_cfg = DataConfig(synthetic=SyntheticConfig(num_users=150, num_items=40))
    cfg = BaselinesConfig(mf_epochs=5, mf_dim=4)
    out = baselines_mode.run(_settings(data_cfg, cfg, tmp_path))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(out))
    names = {"global_mean", "user_mean", "item_mean", "bias", "mf", "teacher"}
    assert names <= set(saved["baselines"])
    assert saved["bayes_optimal"]["mae"] < saved["baselines"]["bias"]["mae"]
    assert saved["data"]["test_examples"] == 150 and saved["data"]["users"] == 150
    assert "bayes_optimal" in capsys.readouterr().out


def test_run_on_movielens_files(tmp_path):
    path, _ = sample_files.write_movielens100k(tmp_path)
    data_cfg = DataConfig(source="movielens100k", path=str(path))
    out = baselines_mode.run(_settings(data_cfg, BaselinesConfig(mf_epochs=2), tmp_path / "w"))
    assert out["data"]["skipped_lines"] == 4 and "bayes_optimal" not in out
    assert all(np.isfinite(v["mae"]) for v in out["baselines"].values())
