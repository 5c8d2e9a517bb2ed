"""torchvision ResNet checkpoints (``resnet50``, ``resnet101``, ``resnet152``) → Flax
``resnet2d_50``.

>>> module, variables = resnet2d_from_torchvision(torch.load('resnet50.pth'), num_classes=7)
>>> logits = module.apply(variables, video, train=False)   # video [B, T, H, W, 3]
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from fer_jax import models
from fer_jax.models.convert.common import (BATCH_NORM, KeyTracker, abstract_variables,
                                           check_shapes, conv_kernel, dense_kernel,
                                           read_variables, to_numpy)


def _stage_sizes(names: Iterable[str]) -> tuple[int, ...]:
    """Blocks per stage from the ``layer{s}.{i}.`` keys: ``(3, 4, 6, 3)`` for ResNet-50,
    ``(3, 4, 23, 3)`` for ResNet-101, ``(3, 8, 36, 3)`` for ResNet-152. A stage without keys
    counts one block, so that its weights are reported missing."""
    blocks: dict[int, int] = {}
    for name in names:
        match = re.match(r"layer(\d+)\.(\d+)\.", name)
        if match:
            stage, index = int(match[1]), int(match[2])
            blocks[stage] = max(blocks.get(stage, 0), index + 1)
    return tuple(blocks.get(stage, 1) for stage in range(1, max(blocks, default=4) + 1))


def _resnet_torch_name(path: tuple[str, ...]) -> str:
    """Flax ``resnet2d_50`` variable path → torchvision ResNet state-dict key.

    ``('layer3_5', 'conv2', 'conv', 'kernel')`` → ``layer3.5.conv2.weight``;
    ``('layer1_0', 'downsample', 'bn', 'mean')`` → ``layer1.0.downsample.1.running_mean``;
    ``('conv1', 'bn', 'scale')`` → ``bn1.weight``; ``('fc', 'kernel')`` → ``fc.weight``.
    """
    if path[0] == "fc":
        return f"fc.{'weight' if path[-1] == 'kernel' else 'bias'}"
    *blocks, unit, layer, leaf = path
    prefix = "".join(block.replace("_", ".") + "." for block in blocks)  # "layer3.5."
    if unit == "downsample":
        return (f"{prefix}downsample.0.weight" if layer == "conv" else
                f"{prefix}downsample.1.{BATCH_NORM[leaf]}")
    number = unit.removeprefix("conv")
    return (f"{prefix}conv{number}.weight" if layer == "conv" else
            f"{prefix}bn{number}.{BATCH_NORM[leaf]}")


def resnet2d_from_torchvision(state_dict: Mapping, num_classes: int | None = None,
                              seed: int = 0, **model_kwargs):
    """torchvision ``resnet50`` (or ``resnet101``/``resnet152``) → ``resnet2d_50`` module and
    variables.

    Args:
      state_dict: keys ``conv1.weight``, ``bn1.{weight,bias,running_mean,running_var}``,
        ``layer1.0.conv1.weight``, ``layer1.0.bn1.*`` … ``layer1.0.downsample.0.weight``,
        ``layer1.0.downsample.1.*`` … ``fc.{weight,bias}``; ``num_batches_tracked`` buffers
        are ignored. NumPy arrays or torch tensors.
      num_classes: ``None`` keeps the checkpoint's classifier (1000 ImageNet classes); a
        different number replaces ``fc`` with a fresh one initialised from ``seed``.
      **model_kwargs: further ``resnet2d_50`` fields (``large_maps``, ``dense``, ``dropout``,
        ``dtype``); strides do not change the weights, so ``large_maps=True`` reads the same
        checkpoint. ``stage_sizes`` (blocks per stage, from the ``layer{s}.{i}`` keys) and
        ``width`` (``conv1``'s channels / 64) default to the checkpoint's.

    Returns:
      ``(module, variables)`` with ``params`` and ``batch_stats``. The input channel count
      follows the checkpoint's ``conv1``. Each frame of ``[B, T, H, W, C]`` goes through the
      network as torchvision's model would take ``[B, C, H, W]``.
    """
    keys = KeyTracker(to_numpy(state_dict), source="torchvision ResNet")
    stem_channels, in_channels = keys["conv1.weight"].shape[:2]
    checkpoint_classes, features = keys["fc.weight"].shape
    new_head = num_classes is not None and num_classes != checkpoint_classes
    module = models.build("resnet2d_50", **{"stage_sizes": _stage_sizes(keys.state_dict),
                                            "width": stem_channels / 64, **model_kwargs,
                                            "num_classes": num_classes or checkpoint_classes})
    abstract = abstract_variables(module, in_channels)

    variables = read_variables(
        abstract, keys, _resnet_torch_name,
        lambda names, w: dense_kernel(w) if names[0] == "fc" else conv_kernel(w),
        skip="fc" if new_head else None)
    keys.check_all_used(ignore=("num_batches_tracked",) + (("fc.",) if new_head else ()))
    if new_head:
        fc = nn.Dense(num_classes)
        variables["params"]["fc"] = fc.init(jax.random.PRNGKey(seed),
                                            jnp.zeros((1, features)))["params"]
    variables = jax.tree.map(jnp.asarray, variables)
    check_shapes(variables, abstract, "torchvision ResNet")
    return module, variables
