"""Ayral's thesis, chapter 3: inflated VGG-16 on AFEW with uniform clip sampling (the
baseline) or, with ``:softmax``, temporal stochastic softmax.

Stated by the thesis: 2D VGG-16 pretrained on VGG-Face then FER2013, every convolution
inflated to 3×3×3, no temporal pooling or stride, fc6/fc7 per frame, head of two 1×1×1
convolutions (128, 7) with dropout before and between (164M parameters); AFEW's 7 classes,
official Train split 80/20 (stratified) into train/validation, official Val as test; source
normalisation mean 0.507395516207, std 0.255128989415; results: 45.66 % (uniform) and
47.35 % (stochastic softmax, γ = 1). Shared chapter-3 settings:
``configs.thesis_chapter3``.

Not stated, chosen here: batch 8 (×4 accumulation), dropout 0.5 everywhere. Pretrained
weights: convert the 2D model with ``python -m fer_jax.models.convert vgg16 …`` and pass
``--config.model.init_from=…``; without it the network trains from scratch.

  python -m fer_jax.main --config=configs/vgg16_3d_afew.py --workdir=runs/vgg16_afew
  python -m fer_jax.main --config=configs/vgg16_3d_afew.py:softmax --workdir=runs/vgg16_afew_softmax
"""
from fer_jax import configs


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("softmax", "smoke"))
    config = configs.defaults()
    configs.afew_vgg16(config)
    if "softmax" in args:  # the thesis' best temperature for this model
        configs.stochastic_softmax(config, gamma=1.0)
    if "smoke" in args:
        configs.smoke(config, model_kwargs=dict(width=1 / 16, fc_dim=32, head_dim=8))
    return config
