"""Ayral's thesis, chapter 2: how variable-length videos become fixed-size training samples
(Tables 2.3 and 2.4), with the inflated VGG-16 on AFEW (``resnet`` for the dense 3D ResNet-18).

  clip    fixed-length clip extraction: F consecutive frames at a random start (short videos
          padded, ``input.pad``); at test time the fully convolutional network over the whole
          video (per-frame scores averaged).
  resize  temporal resize: F frames evenly spaced over the whole video (Du Toit's 8 frames;
          the frame rate varies from video to video); at test time the same resize.
  frames8 / frames16 / frames32 / frames64   the clip length F (default 16).

Thesis (AFEW): Table 2.3 clip extraction 46.53 % vs temporal resize 45.07 % (i3D-VGG, 16
frames); Table 2.4 clip lengths 8 / 16 / 32 / 64: 3D ResNet 35.72 / 40.56 / 36.29 / 28.20,
i3D-VGG 44.91 / 46.53 / 47.10 / –. Settings: ``configs.thesis_chapter2`` (Adam, dropout 30 %
on the input and 90 % on the features for the ResNet, early stopping); VGG: pretrained
normalisation and dropout 0.5 as in vgg16_3d_afew.py. Other ways to standardise length are
options of any config: ``input.train_clip`` = random | centre | evenly_spaced (and the
score-table sampler, ``config.sampler``), ``input.pad`` = repeat | loop | zeros for videos
shorter than a clip, and at test time ``eval.full_video`` (every frame) or ``eval.clips`` = K
(clip aggregation: mean of K clips' logits).

``synthetic`` runs the setting on the synthetic benchmark at CPU scale
(``configs.thesis_synthetic``); ``smoke`` shrinks it to seconds (tests).

  python -m fer_jax.main --config=configs/thesis_length.py:resize --workdir=runs/afew_resize
  python launch/sweep.py --config=configs/thesis_length.py:clip,resnet \\
      --config=configs/thesis_length.py:clip,resnet,frames32 --workdir=runs/t24 --eval
"""
from fer_jax import configs

FRAMES = {"frames8": 8, "frames16": 16, "frames32": 32, "frames64": 64}


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("clip", "resize", "resnet", "synthetic", "smoke") +
                             tuple(FRAMES))
    if {"clip", "resize"} <= args:
        raise ValueError("choose clip or resize, not both")
    frames = [FRAMES[a] for a in args if a in FRAMES]
    if len(frames) > 1:
        raise ValueError("choose one clip length")
    config = configs.defaults()
    config.dataset = configs.real_dataset("afew", 7)
    if "resnet" in args:
        config.model.name = "resnet3d_18"
        config.model.kwargs = dict(pooling="two_step", input_dropout=0.3, dropout=0.9)
    else:
        config.model.name = "vgg16_3d"
        config.model.kwargs = dict(time_kernel=3, fc_dropout=0.5, head_dropout=0.5)
    configs.thesis_chapter2(config, clip_frames=frames[0] if frames else 16)
    if "resnet" not in args:
        config.input.update(mean=0.507395516207, std=0.255128989415)
    config.train.batch_size = 8
    if "synthetic" in args:
        configs.thesis_synthetic(config)
        if frames:
            config.input.clip_frames = frames[0]
    if "resize" in args:
        config.input.update(train_clip="evenly_spaced", eval_clip="evenly_spaced")
        config.eval.full_video = False
    if "smoke" in args:
        configs.smoke(config, model_kwargs=dict(width=1 / 16, fc_dim=32, head_dim=8)
                      if config.model.name == "vgg16_3d" else dict(width=1 / 8))
    return config
