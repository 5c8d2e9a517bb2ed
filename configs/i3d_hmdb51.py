"""Ayral's thesis, chapter 3: I3D Inception-v1 (RGB) on HMDB-51 with uniform clip sampling
or, with ``:softmax``, temporal stochastic softmax.

Stated by the thesis: I3D pretrained on ImageNet and Kinetics (kinetics_i3d_pytorch port),
temporal strides removed, 16-frame clips, batch 16 on two GPUs; HMDB-51's 51 classes, three
official splits averaged; results: 66.79 % (uniform) and 67.37 % (stochastic softmax,
γ = 0.25). Shared chapter-3 settings: ``configs.thesis_chapter3``.

Not stated, chosen here: 224×224 input and I3D's [-1, 1] input range (mean 0.5, std 0.5) as
in the Kinetics release; split 1. Pretrained weights: ``python -m fer_jax.models.convert i3d
model_rgb.pth i3d.msgpack --num-classes 51`` and ``--config.model.init_from=i3d.msgpack``.

  python -m fer_jax.main --config=configs/i3d_hmdb51.py --workdir=runs/i3d_hmdb51
  python -m fer_jax.main --config=configs/i3d_hmdb51.py:softmax --workdir=runs/i3d_hmdb51_softmax
"""
from fer_jax import configs


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("softmax", "smoke"))
    config = configs.defaults()
    configs.hmdb51_i3d(config)
    if "softmax" in args:  # the thesis' best temperature for this model
        configs.stochastic_softmax(config, gamma=0.25)
    if "smoke" in args:
        configs.smoke(config, model_kwargs=dict(width=1 / 8), clip_frames=8)
    return config
