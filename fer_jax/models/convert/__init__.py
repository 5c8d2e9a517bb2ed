"""PyTorch checkpoints and Keras files → Flax modules and variables.

Every PyTorch converter takes a state dict (``name → numpy array`` or torch tensors), the Keras
converter a file path; each returns ``(module, variables)`` ready for ``module.apply(variables, x, train=False)`` on channels-last
input ``[B, T, H, W, C]``. Unused or missing weights raise a one-line ``UserError``.
"""
from fer_jax.models.convert.cnn3d import i3d_from_pytorch, vgg16_3d_from_torchvision
from fer_jax.models.convert.keras import mini_xception_from_keras
from fer_jax.models.convert.resnet2d import resnet2d_from_torchvision
from fer_jax.models.convert.timesformer import timesformer_from_hf, timesformer_from_official

__all__ = ["i3d_from_pytorch", "mini_xception_from_keras", "resnet2d_from_torchvision",
           "timesformer_from_hf", "timesformer_from_official", "vgg16_3d_from_torchvision"]
