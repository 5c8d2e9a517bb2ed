"""Figures of training diagnostics (matplotlib, Agg canvas)."""
from fer_jax.viz.sampling_maps import plot_sampling_map

__all__ = ["plot_sampling_map"]
