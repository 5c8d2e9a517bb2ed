"""fer_jax: interpretable spatiotemporal facial expression recognition in JAX/Flax.

Subpackages are imported on demand (``from fer_jax import models``) so that
importing the package itself stays cheap.
"""

__version__ = "0.1.0"
