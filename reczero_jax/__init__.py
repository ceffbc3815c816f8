"""reczero-jax: RecZero / RecOne (reasoning-enhanced rating prediction) in JAX/Flax."""

__version__ = "0.1.0"
