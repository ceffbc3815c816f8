"""Classical rating predictors scored on the test examples.

Every predictor is fitted on the TRAIN ratings (MF early-stops on the VALIDATION
ratings) and scored on the test examples that survive the history filters, i.e. the
same targets the LLM is evaluated on, with ``reczero_jax.metrics``.

Predictors: global_mean, user_mean, item_mean, bias (mu + b_u + b_i), mf (biased MF);
and three that read only the prompt's numbers: history_user_avg, history_item_avg and
teacher = round((user_avg_rating + item_avg_rating) / 2). The synthetic source adds
bayes_optimal, the expected floor given the world's latents.

Examples read from a prepared dataset of a file source come without the ratings table
(``data.source is None``): only the three predictors that read the prompt's numbers are
scored then, and the results say that the fitted ones need ``mode=baselines`` on the raw
files.
"""

from __future__ import annotations

import numpy as np

from reczero_jax import metrics
from reczero_jax.baselines.means import BiasModel, MeanModel
from reczero_jax.baselines.mf import fit_mf
from reczero_jax.data.data_config import BaselinesConfig
from reczero_jax.data.loader import LoadedData
from reczero_jax.data.splits import TRAIN, VALID
from reczero_jax.data.synthetic import bayes_floor
from reczero_jax.data.teacher import teacher_rating


def _index(ids: np.ndarray, keys: list[str]) -> np.ndarray:
    lookup = {k: n for n, k in enumerate(ids)}
    return np.array([lookup.get(k, -1) for k in keys], dtype=np.int64)


FITTED = ("global_mean", "user_mean", "item_mean", "bias", "mf")
NOT_FITTED_NOTE = (
    "the fitted baselines (" + ", ".join(FITTED) + ") need the ratings table, which a "
    "prepared dataset (data.tfds_data_dir) does not hold: run mode=baselines on the raw files"
)


def _scores(preds: dict[str, np.ndarray], target: np.ndarray) -> dict:
    return {
        name: {"mae": metrics.mae(p, target), "rmse": metrics.rmse(p, target)}
        for name, p in preds.items()
    }


def prompt_number_predictions(test) -> dict[str, np.ndarray]:
    """The predictors that read only the prompt's numbers (no ratings table needed)."""
    u_avg = np.array([e.user_avg_rating for e in test])
    i_avg = np.array([e.item_avg_rating for e in test])
    return {
        "history_user_avg": u_avg,
        "history_item_avg": i_avg,
        "teacher": teacher_rating(u_avg, i_avg),
    }


def evaluate_baselines(data: LoadedData, cfg: BaselinesConfig, seed: int) -> dict:
    """{name: {'mae', 'rmse'}} on data.examples['test'] (see the module docstring); only
    the prompt-number predictors when ``data.source`` is None."""
    test = data.examples["test"]
    target = np.array([e.rating for e in test])
    if data.source is None:
        return _scores(prompt_number_predictions(test), target)
    r = data.source.ratings
    tr, va = data.split == TRAIN, data.split == VALID
    # Training-set user / item indices (-1 where the id never occurs in train).
    tr_users, tr_items = set(r.user[tr].tolist()), set(r.item[tr].tolist())
    u = _index(r.user_ids, [e.user_id for e in test])
    i = _index(r.item_ids, [e.item_id for e in test])
    u = np.where(np.isin(u, list(tr_users)), u, -1)
    i = np.where(np.isin(i, list(tr_items)), i, -1)

    train = (r.user[tr], r.item[tr], r.rating[tr])
    means = MeanModel.fit(*train, r.num_users, r.num_items)
    bias = BiasModel.fit(*train, r.num_users, r.num_items, cfg.bias_l2, cfg.bias_sweeps)
    mf = fit_mf(
        train,
        (r.user[va], r.item[va], r.rating[va]),
        r.num_users,
        r.num_items,
        dim=cfg.mf_dim,
        l2=cfg.mf_l2,
        lr=cfg.mf_lr,
        epochs=cfg.mf_epochs,
        batch_size=cfg.mf_batch_size,
        init_std=cfg.mf_init_std,
        patience=cfg.patience,
        seed=seed,
    )
    preds = {
        "global_mean": means.predict_global(len(test)),
        "user_mean": means.predict_user(u),
        "item_mean": means.predict_item(i),
        "bias": bias.predict(u, i),
        "mf": mf.predict(u, i),
        **prompt_number_predictions(test),
    }
    out = _scores(preds, target)
    out["mf"]["best_epoch"] = mf.best_epoch
    return out


def baseline_results(data: LoadedData, cfg: BaselinesConfig, seed: int, source: str) -> dict:
    """``{'baselines', 'data'}`` and, for the synthetic world, ``'bayes_optimal'`` and
    ``'teacher'``: the rows every results.json carries beside the LLM's. Without the
    ratings table, ``'baselines_note'`` says why the fitted baselines are missing."""
    results: dict = {"baselines": evaluate_baselines(data, cfg, seed)}
    if data.source is None:
        results["baselines_note"] = NOT_FITTED_NOTE
    results["data"] = {"source": source, **data.counts()}
    if data.world is not None:
        results["bayes_optimal"] = bayes_floor(data.world, data.examples["test"])
        results["teacher"] = results["baselines"]["teacher"]
    return results
