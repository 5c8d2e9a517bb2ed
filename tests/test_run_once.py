"""``run_once``: initialisation compiled at a low optimisation level gives the same bits as
XLA's default level; the options step aside when ``XLA_FLAGS`` chooses a level."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fer_jax import run_once


class _Tiny(nn.Module):
    """Conv → LayerNorm → Dense: truncated-normal, zero, one and lecun-normal initialisers."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3, 3), kernel_init=nn.initializers.truncated_normal(0.02))(x)
        return nn.Dense(3)(nn.LayerNorm()(x).mean(axis=(1, 2, 3)))


def test_run_once_options_give_the_default_levels_bits():
    model, x = _Tiny(), jnp.zeros((1, 4, 8, 8, 3))
    # explicit options override the test suite's XLA_FLAGS (level 0) on both sides
    default = jax.jit(model.init, compiler_options={"xla_backend_optimization_level": 3})
    once = jax.jit(model.init, compiler_options=run_once.RUN_ONCE_OPTIONS)
    a, b = default(jax.random.PRNGKey(7), x), once(jax.random.PRNGKey(7), x)
    leaves = jax.tree.leaves(a)
    assert len(leaves) == 6 and any(np.abs(leaf).max() > 0 for leaf in leaves)
    for u, v in zip(leaves, jax.tree.leaves(b)):
        np.testing.assert_array_equal(u, v)


def test_options_only_on_cpu_and_only_without_a_level_in_xla_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert run_once.compiler_options() == run_once.RUN_ONCE_OPTIONS
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    assert run_once.compiler_options() is None
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.delenv("XLA_FLAGS")
    assert run_once.compiler_options() is None
