"""PyTorch 3D-CNN checkpoints → Flax: inflated torchvision VGG-16 and kinetics_i3d_pytorch I3D.

>>> module, variables = vgg16_3d_from_torchvision(torch.load('vgg16.pth'), num_classes=7)
>>> module, variables = i3d_from_pytorch(torch.load('model_rgb.pth'))
>>> logits = module.apply(variables, video, train=False)   # video [B, T, H, W, 3]
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from fer_jax import models
from fer_jax.models.cnn3d import VGG16_STAGES, FrameHead
from fer_jax.models.convert.common import (BATCH_NORM, KeyTracker, abstract_variables,
                                           check_shapes, conv_kernel, dense_kernel,
                                           read_variables, to_numpy)
from fer_jax.models.inflate import inflate_2d_to_3d

# Indices of the 13 convolutions in torchvision's ``vgg16().features`` (ReLUs and pools between).
VGG16_TORCHVISION_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)

def vgg16_3d_from_torchvision(state_dict: Mapping, num_classes: int, time_kernel: int = 3,
                              seed: int = 0, **model_kwargs):
    """torchvision-layout 2D VGG-16 → inflated ``vgg16_3d`` with a new classification head.

    Args:
      state_dict: ``features.{0,2,5,...,28}.{weight,bias}`` (13 convolutions) and
        ``classifier.{0,3}.{weight,bias}`` (fc6, fc7); ``classifier.6`` (the 2D model's own
        classifier) is dropped. NumPy arrays or torch tensors.
      num_classes: size of the new head (``FrameHead``: 128 → ReLU → dropout →
        num_classes), freshly initialised from ``seed``.
      time_kernel: temporal size of the inflated kernels, ``W3D[t] = W2D / time_kernel``.
      **model_kwargs: further ``vgg16_3d`` fields (``dense``, dropout rates, ``dtype``, ...).
        ``fc_dim`` defaults to the checkpoint's.

    Returns:
      ``(module, variables)``; on a temporally constant video, per-frame fc7 features equal
      the 2D network's wherever the temporal padding does not reach (13 frames from the ends).
    """
    keys = KeyTracker(to_numpy(state_dict), source="torchvision VGG-16")
    names = [f"conv{stage}_{i}" for stage, features in enumerate(VGG16_STAGES, start=1)
             for i in range(1, len(features) + 1)]
    params_2d = {}
    for name, index in zip(names, VGG16_TORCHVISION_CONVS):
        params_2d[name] = {"conv": {"kernel": conv_kernel(keys[f"features.{index}.weight"]),
                                    "bias": keys[f"features.{index}.bias"]}}
    for name, index in (("fc6", 0), ("fc7", 3)):
        params_2d[name] = {"kernel": dense_kernel(keys[f"classifier.{index}.weight"]),
                           "bias": keys[f"classifier.{index}.bias"]}
    keys.check_all_used(ignore=("classifier.6.",))

    fc_dim = params_2d["fc7"]["kernel"].shape[1]
    module = models.build("vgg16_3d", **{"fc_dim": fc_dim, **model_kwargs,
                                         "num_classes": num_classes, "time_kernel": time_kernel})
    params = inflate_2d_to_3d(params_2d, time_kernel)
    in_channels = params_2d["conv1_1"]["conv"]["kernel"].shape[2]
    expected = abstract_variables(module, in_channels)["params"]
    check_shapes(params, {k: v for k, v in expected.items() if k != "head"},
                 "torchvision VGG-16")
    head = FrameHead(module.head_dim, num_classes, module.head_dropout, module.dtype)
    params["head"] = head.init(jax.random.PRNGKey(seed), jnp.zeros((1, fc_dim)),
                               train=False)["params"]
    return module, {"params": jax.tree.map(jnp.asarray, params)}


def _i3d_torch_name(path: tuple[str, ...]) -> str:
    """Flax I3D variable path → kinetics_i3d_pytorch state-dict key.

    ``('mixed_3b', 'branch_1_0', 'conv', 'kernel')`` → ``mixed_3b.branch_1.0.conv3d.weight``;
    ``bn`` leaves map to ``batch3d.{weight,bias,running_mean,running_var}``.
    """
    *units, layer, leaf = path
    if layer == "conv3d_0c_1x1":  # the logits conv: a bare nn.Conv with bias
        return f"conv3d_0c_1x1.conv3d.{'weight' if leaf == 'kernel' else 'bias'}"
    prefix = ".".join(re.sub(r"^(branch_\d)_(\d)$", r"\1.\2", u) for u in units)
    if layer == "conv":
        return f"{prefix}.conv3d.weight"
    return f"{prefix}.batch3d.{BATCH_NORM[leaf]}"


def i3d_from_pytorch(state_dict: Mapping, num_classes: int | None = None, seed: int = 0,
                     **model_kwargs):
    """hassony2/kinetics_i3d_pytorch ``I3D`` (RGB or flow) → ``i3d`` module and variables.

    Args:
      state_dict: keys ``conv3d_1a_7x7.conv3d.weight``,
        ``conv3d_1a_7x7.batch3d.{weight,bias,running_mean,running_var}``,
        ``mixed_3b.branch_0...``, ``mixed_3b.branch_1.0...`` … ``conv3d_0c_1x1.conv3d.{weight,
        bias}``. NumPy arrays or torch tensors.
      num_classes: ``None`` keeps the checkpoint's classifier; a different number replaces
        ``conv3d_0c_1x1`` with a fresh one initialised from ``seed``.
      **model_kwargs: further ``i3d`` fields (``dense``, ``dropout``, ``dtype``).

    Returns:
      ``(module, variables)`` with ``params`` and ``batch_stats``. The input channel count (3
      for RGB, 2 for flow) follows the checkpoint.
    """
    keys = KeyTracker(to_numpy(state_dict), source="kinetics_i3d_pytorch I3D")
    checkpoint_classes, features = keys["conv3d_0c_1x1.conv3d.weight"].shape[:2]
    new_head = num_classes is not None and num_classes != checkpoint_classes
    module = models.build("i3d", num_classes=num_classes or checkpoint_classes, **model_kwargs)
    in_channels = keys["conv3d_1a_7x7.conv3d.weight"].shape[1]
    abstract = abstract_variables(module, in_channels)

    variables = read_variables(abstract, keys, _i3d_torch_name,
                               lambda names, w: conv_kernel(w),
                               skip="conv3d_0c_1x1" if new_head else None)
    keys.check_all_used(ignore=("num_batches_tracked",) + (("conv3d_0c_1x1.",) if new_head
                                                           else ()))
    if new_head:
        logits = nn.Conv(num_classes, (1, 1, 1))
        variables["params"]["conv3d_0c_1x1"] = logits.init(
            jax.random.PRNGKey(seed), jnp.zeros((1, 1, 1, 1, features)))["params"]
    variables = jax.tree.map(jnp.asarray, variables)
    check_shapes(variables, abstract, "kinetics_i3d_pytorch I3D")
    return module, variables
