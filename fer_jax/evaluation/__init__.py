"""Evaluation: classification metrics (and, later, explanation measurements)."""
from fer_jax.evaluation import metrics  # noqa: F401
