"""Ayral's thesis, chapter 3: 3D ResNeXt-101 on HMDB-51 with uniform clip sampling or, with
``:softmax``, temporal stochastic softmax.

Stated by the thesis: Hara et al.'s Kinetics-pretrained ResNeXt-101 (cardinality 32,
shortcut B, 47M parameters), temporal strides removed, 16-frame clips, batch 16; HMDB-51,
three splits averaged; results: 58.13 % (uniform) and 59.74 % (stochastic softmax, γ = 0.5).
Shared chapter-3 settings: ``configs.thesis_chapter3``.

Not stated, chosen here: 112×112 input (Hara et al.'s resolution), normalisation mean 0.5 /
std 0.25 (set the pretrained model's own when initialising from converted weights), split 1.

  python -m fer_jax.main --config=configs/resnext101_hmdb51.py --workdir=runs/resnext_hmdb51
  python -m fer_jax.main --config=configs/resnext101_hmdb51.py:softmax \\
      --workdir=runs/resnext_hmdb51_softmax
"""
from fer_jax import configs


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("softmax", "smoke"))
    config = configs.defaults()
    config.dataset = configs.real_dataset("hmdb51", 51, protocol="split1")
    config.model.name = "resnext3d_101"
    config.model.kwargs = dict()
    configs.thesis_chapter3(config, max_frames=512)
    config.train.batch_size = 16
    if "softmax" in args:  # the thesis' best temperature for this model
        configs.stochastic_softmax(config, gamma=0.5)
    if "smoke" in args:
        configs.smoke(config, model_kwargs=dict(width=0.25, cardinality=4,
                                                stage_sizes=(1, 1, 1, 1)), clip_frames=8)
    return config
