"""``random_variables``: a model's variables drawn in NumPy, without compiling its ``init``.

A model's initialisation is one XLA program with a random draw per parameter; at the test
suite's compiler settings it takes seconds to compile for the deeper models (the I3D of width
1/8: 5–7 s of CPU, more than its training step). Tests that need some weights of the right
shapes and scales, but not the model's own initial values, draw them here instead.
"""
import jax
import jax.numpy as jnp
import numpy as np


def random_variables(model, x, seed=0, biases=True, bias_scale=0.2, var_high=2.0):
    """Variables of ``model`` for input ``x`` (shapes from ``jax.eval_shape`` of its init):
    He-normal kernels; with ``biases``, normal biases and BatchNorm means/shifts of standard
    deviation ``bias_scale``, else zero (a bias-free network); BatchNorm scales of both signs
    (|s| in [0.5, 1.5], 30 % negative) and variances uniform in [0.5, ``var_high``]."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)

    def leaf(path, s):
        name = path[-1].key
        if name == "kernel":
            fan_in = np.prod(s.shape[:-1])
            return rng.standard_normal(s.shape) * np.sqrt(2 / fan_in)
        if name == "scale":
            return rng.uniform(0.5, 1.5, s.shape) * rng.choice([-1, 1], s.shape, p=[0.3, 0.7])
        if name == "var":
            return rng.uniform(0.5, var_high, s.shape)
        return bias_scale * rng.standard_normal(s.shape) * biases  # bias, BN bias, BN mean

    return jax.tree.map_with_path(lambda p, s: jnp.asarray(leaf(p, s), s.dtype), shapes)
