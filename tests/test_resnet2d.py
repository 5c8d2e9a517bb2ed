"""2D ResNet-50 (Belharbi et al.): per-frame processing of video, large maps, CAM on its head."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fast import fast_jit
from fer_jax import attribution, models

TINY = dict(stage_sizes=(1, 1, 1, 1), width=0.125)


@pytest.fixture(scope="module")
def tiny():
    model = models.build("resnet2d_50", num_classes=5, **TINY)
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 3, 64, 64, 3))
    variables = fast_jit(model.init)(jax.random.PRNGKey(1), x)
    return model, variables, x


def test_frames_are_classified_independently_and_averaged(tiny):
    model, variables, x = tiny
    apply = fast_jit(lambda v, x: model.apply(v, x))
    clip = apply(variables, x)
    singles = jnp.stack([apply(variables, x[:, t:t + 1]) for t in range(3)], axis=1)
    np.testing.assert_allclose(clip, singles.mean(axis=1), rtol=1e-5, atol=1e-5)
    dense = models.build("resnet2d_50", num_classes=5, dense=True, **TINY)
    per_frame = fast_jit(lambda v, x: dense.apply(v, x))(variables, x)
    assert per_frame.shape == (2, 3, 5)
    np.testing.assert_allclose(per_frame, singles, rtol=1e-5, atol=1e-5)


def test_large_maps_keep_an_eighth_of_the_input_resolution(tiny):
    model, variables, x = tiny
    large = models.build("resnet2d_50", num_classes=5, large_maps=True, **TINY)
    shapes = [jax.eval_shape(lambda: attribution.layer_activations(m, variables, x,
                                                                   m.attribution_layer)[0])
              for m in (model, large)]
    assert shapes[0].shape == (2, 3, 2, 2, 256)   # 64 / 32
    assert shapes[1].shape == (2, 3, 8, 8, 256)   # 64 / 8: the 28×28 of Belharbi et al. at 224
    assert model.attribution_layer == "layer4_0"
    assert models.build("resnet2d_50", num_classes=7).attribution_layer == "layer4_2"


def test_cam_of_the_global_average_pooling_head_explains_the_logit(tiny):
    model, variables, x = tiny
    target = jnp.array([1, 4])
    maps = fast_jit(lambda v, x: attribution.cam(model, v, x, target))(variables, x)
    logits = fast_jit(lambda v, x: model.apply(v, x))(variables, x)
    bias = variables["params"]["fc"]["bias"][target]
    # logit = mean over frames and positions of the CAM + bias (GAP → linear, frame mean)
    np.testing.assert_allclose(maps.mean(axis=(1, 2, 3)) + bias,
                               logits[jnp.arange(2), target], rtol=1e-4, atol=1e-5)


def test_images_must_come_as_one_frame_clips():
    model = models.build("resnet2d_50", num_classes=5, **TINY)
    with pytest.raises(ValueError, match=r"images as T = 1"):
        jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((2, 64, 64, 3))))
