"""2D → 3D inflation: the Carreira & Zisserman rule and its frame-by-frame equivalence."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax import models
from fer_jax.models.inflate import inflate_2d_to_3d, inflate_kernel

fast_jit = functools.partial(jax.jit, compiler_options={
    "xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False})


def _random_params(model, shape, seed=0):
    """He-scaled random parameters for ``model`` without running its initialisers."""
    abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                              jax.ShapeDtypeStruct(shape, jnp.float32))["params"]
    rng = np.random.default_rng(seed)

    def draw(leaf):
        scale = (2 / np.prod(leaf.shape[:-1])) ** 0.5 if leaf.ndim > 1 else 0.1
        return (rng.standard_normal(leaf.shape) * scale).astype(np.float32)

    return jax.tree.map(draw, abstract)


def test_kernel_rule():
    rng = np.random.default_rng(0)
    params_2d = {"a": {"conv": {"kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
                                "bias": rng.standard_normal(4).astype(np.float32)}},
                 "b": {"kernel": rng.standard_normal((5, 6)).astype(np.float32),
                       "bias": np.zeros(6, np.float32)},
                 "bn": {"scale": np.ones(4, np.float32)}}
    params_3d = inflate_2d_to_3d(params_2d, time_kernel=3)
    kernel_2d, kernel_3d = params_2d["a"]["conv"]["kernel"], params_3d["a"]["conv"]["kernel"]
    assert kernel_3d.shape == (3, 3, 3, 2, 4) and kernel_3d.dtype == np.float32
    for t in range(3):  # W3D[t] = W2D / k_t, so the taps sum back to W2D
        np.testing.assert_allclose(kernel_3d[t], kernel_2d / 3, rtol=1e-6)
    np.testing.assert_allclose(kernel_3d.sum(0), kernel_2d, rtol=1e-6)
    np.testing.assert_array_equal(params_3d["a"]["conv"]["bias"], params_2d["a"]["conv"]["bias"])
    np.testing.assert_array_equal(params_3d["b"]["kernel"], params_2d["b"]["kernel"])  # dense
    np.testing.assert_array_equal(params_3d["bn"]["scale"], params_2d["bn"]["scale"])

    per_layer = inflate_2d_to_3d({"a": params_2d["a"], "c": params_2d["a"]},
                                 time_kernel={"a/conv": 5, "c/conv": 1})
    assert per_layer["a"]["conv"]["kernel"].shape == (5, 3, 3, 2, 4)
    np.testing.assert_array_equal(per_layer["c"]["conv"]["kernel"][0], kernel_2d)
    with pytest.raises(KeyError, match="no entry for conv 'a/conv'"):
        inflate_2d_to_3d(params_2d, time_kernel={})
    with pytest.raises(KeyError, match="names no conv"):
        inflate_2d_to_3d(params_2d, time_kernel={"a/conv": 3, "typo": 3})
    with pytest.raises(ValueError, match="2D conv kernel"):
        inflate_kernel(kernel_3d, 3)


def test_inflated_vgg16_reproduces_the_frame_model_away_from_the_ends():
    """vgg16_3d with ``time_kernel=1`` is the 2D VGG-16 applied to each frame. Inflating its
    kernels to k_t = 3 and feeding a video whose 30 frames are one image gives that image's 2D
    output on frames 13..16. Nearer the ends it cannot: 'SAME' padding puts zeros before the
    first and after the last frame, so each k_t = 3 convolution sees only 2 of its 3 taps
    there, and 13 stacked convolutions carry that 13 frames inwards."""
    kwargs = dict(num_classes=5, dense=True, width=1 / 16, fc_dim=32, head_dim=8)
    frame_model = models.build("vgg16_3d", time_kernel=1, **kwargs)
    model = models.build("vgg16_3d", **kwargs)
    params_frame = _random_params(frame_model, (1, 1, 32, 32, 3))
    params_2d = jax.tree.map(lambda a: a[0] if a.ndim == 5 else a, params_frame)  # [3,3,I,O]
    params_3d = inflate_2d_to_3d(params_2d, time_kernel=3)

    image = jax.random.normal(jax.random.PRNGKey(0), (1, 1, 32, 32, 3))
    expected = fast_jit(frame_model.apply)({"params": params_frame}, image)[0, 0]
    video = jnp.broadcast_to(image, (1, 30, 32, 32, 3))
    scores = fast_jit(model.apply)({"params": params_3d}, video)[0]  # [30, 5]
    np.testing.assert_allclose(scores[13:17], np.broadcast_to(expected, (4, 5)),
                               rtol=1e-5, atol=1e-5)
    assert np.abs(expected).max() > 0.1
    assert np.abs(scores[0] - expected).max() > 1e-3
    assert np.abs(scores[-1] - expected).max() > 1e-3
