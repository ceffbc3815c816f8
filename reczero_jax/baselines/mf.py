"""Biased matrix factorisation in JAX + optax, early-stopped on validation RMSE.

Model: r_hat(u, i) = mu + b_u + b_i + <p_u, q_i>, p_u, q_i in R^d.
Loss of a batch B: mean_B (r - r_hat)^2 + l2 * mean_B (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2).
Adam over shuffled mini-batches; one jitted ``lax.scan`` per epoch. The parameters of
the epoch with the best validation RMSE are kept. Unseen users / items (index -1) get
zero bias and factors at prediction time.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from reczero_jax.observe import Progress


@dataclasses.dataclass(frozen=True)
class MFResult:
    """Fitted parameters (numpy) and the training trace."""

    params: dict[str, np.ndarray]
    best_epoch: int
    valid_rmse: tuple[float, ...]  # per epoch run

    def predict(self, user, item) -> np.ndarray:
        """[N] predictions in stars, clipped to [1, 5]."""
        p = self.params
        user, item = np.asarray(user), np.asarray(item)
        ku, ki = user >= 0, item >= 0
        u, i = np.maximum(user, 0), np.maximum(item, 0)
        dot = np.sum(p["P"][u] * p["Q"][i], axis=-1) * (ku & ki)
        pred = p["mu"] + p["bu"][u] * ku + p["bi"][i] * ki + dot
        return np.clip(pred, 1.0, 5.0)


def _predict(params, u, i):
    dot = jnp.sum(params["P"][u] * params["Q"][i], axis=-1)  # [B]
    return params["mu"] + params["bu"][u] + params["bi"][i] + dot


def _loss(params, u, i, r, w, l2):
    """Weighted mean loss; w is 0 on padding rows. u, i, r, w: [B]."""
    err = (r - _predict(params, u, i)) ** 2
    reg = (
        jnp.sum(params["P"][u] ** 2, -1)
        + jnp.sum(params["Q"][i] ** 2, -1)
        + params["bu"][u] ** 2
        + params["bi"][i] ** 2
    )
    return jnp.sum(w * (err + l2 * reg)) / jnp.maximum(jnp.sum(w), 1.0)


def fit_mf(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray, np.ndarray],
    num_users: int,
    num_items: int,
    *,
    dim: int,
    l2: float,
    lr: float,
    epochs: int,
    batch_size: int,
    init_std: float,
    patience: int,
    seed: int,
) -> MFResult:
    """Fits biased MF on ``train`` = (user [N], item [N], rating [N]) arrays.

    ``valid`` has the same layout (indices may be -1 for unseen ids); an empty
    ``valid`` disables early stopping (all ``epochs`` run, the last one is kept).
    """
    u_tr, i_tr, r_tr = (np.asarray(a) for a in train)
    n = r_tr.shape[0]
    num_batches = max(1, -(-n // batch_size))
    pad = num_batches * batch_size - n
    key = jax.random.key(seed)
    k_p, k_q, key = jax.random.split(key, 3)
    params = {
        "mu": jnp.asarray(r_tr.mean(), jnp.float32),
        "bu": jnp.zeros(num_users, jnp.float32),
        "bi": jnp.zeros(num_items, jnp.float32),
        "P": init_std * jax.random.normal(k_p, (num_users, dim), jnp.float32),
        "Q": init_std * jax.random.normal(k_q, (num_items, dim), jnp.float32),
    }
    opt = optax.adam(lr)
    opt_state = opt.init(params)
    data = tuple(
        jnp.asarray(np.concatenate([a, np.zeros(pad, a.dtype)]))
        for a in (u_tr.astype(np.int32), i_tr.astype(np.int32), r_tr.astype(np.float32))
    )
    weight = jnp.asarray(np.concatenate([np.ones(n), np.zeros(pad)]), jnp.float32)

    @jax.jit
    def epoch(params, opt_state, key):
        perm = jax.random.permutation(key, num_batches * batch_size)
        batches = [x[perm].reshape(num_batches, batch_size) for x in (*data, weight)]

        def step(carry, batch):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(_loss)(params, *batch, l2)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), tuple(batches))
        return params, opt_state, jnp.mean(losses)

    def to_numpy(p):
        return {k: np.asarray(v) for k, v in p.items()}

    u_va, i_va, r_va = (np.asarray(a) for a in valid)
    best, best_rmse, best_epoch, trace, bad = to_numpy(params), np.inf, 0, [], 0
    progress = Progress(epochs, "mf baseline", every=max(1, epochs // 4), unit="epoch")
    for e in range(epochs):
        key, k_e = jax.random.split(key)
        params, opt_state, _ = epoch(params, opt_state, k_e)
        current = MFResult(to_numpy(params), e, ())
        if r_va.size == 0:
            best, best_epoch = current.params, e
            progress.update(e + 1)
            continue
        err = float(np.sqrt(np.mean((current.predict(u_va, i_va) - r_va) ** 2)))
        trace.append(err)
        progress.update(e + 1, valid_rmse=err)
        if err < best_rmse - 1e-6:
            best, best_rmse, best_epoch, bad = current.params, err, e, 0
        else:
            bad += 1
            if bad >= patience:
                break
    progress.close()
    return MFResult(params=best, best_epoch=best_epoch, valid_rmse=tuple(trace))
