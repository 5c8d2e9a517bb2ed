"""Ayral's thesis, chapter 3: C3D on AFEW with uniform clip sampling or, with ``:softmax``, temporal
stochastic softmax.

Stated by the thesis: C3D pretrained on Sports-1M with the temporal stride removed from every
convolution and pooling (per-frame scores); AFEW protocol as in vgg16_3d_afew.py; results:
39.95 % (uniform) and 42.78 % (stochastic softmax, γ = 1). Shared chapter-3 settings:
``configs.thesis_chapter3``.

Not stated, chosen here: batch 8 (×4 accumulation), dropout 0.5, normalisation mean 0.5 /
std 0.25 (set the pretrained model's own when initialising from converted weights).

  python -m fer_jax.main --config=configs/c3d_afew.py --workdir=runs/c3d_afew
  python -m fer_jax.main --config=configs/c3d_afew.py:softmax --workdir=runs/c3d_afew_softmax
"""
from fer_jax import configs


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("softmax", "smoke"))
    config = configs.defaults()
    config.dataset = configs.real_dataset("afew", 7)
    config.model.name = "c3d"
    config.model.kwargs = dict(dropout=0.5)
    configs.thesis_chapter3(config)
    config.train.batch_size = 8
    if "softmax" in args:  # the thesis' best temperature for this model
        configs.stochastic_softmax(config, gamma=1.0)
    if "smoke" in args:
        configs.smoke(config, model_kwargs=dict(width=1 / 16, fc_dim=32), clip_frames=8)
    return config
