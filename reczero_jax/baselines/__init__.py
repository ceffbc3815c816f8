"""Classical rating predictors: means, bias-only and biased matrix factorisation."""

from reczero_jax.baselines.means import BiasModel, MeanModel
from reczero_jax.baselines.mf import MFResult, fit_mf

__all__ = ["BiasModel", "MeanModel", "MFResult", "fit_mf"]
