"""``fast_jit``: ``jax.jit`` with XLA's CPU optimisations turned down.

Tests run tiny models once; compiling them at the lowest optimisation level takes a fraction
of the default time and runs them fast enough.
"""
import functools

import jax

fast_jit = functools.partial(jax.jit, compiler_options={
    "xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False})
