"""Ayral's thesis, chapter 2: where and how a 3D ResNet-18 pools space and time (Tables 2.1, 2.2).

``thesis_pooling.py:VARIANT`` with VARIANT one of ``avg_features`` (3D average of the last
feature maps, then the classifier: Hara et al.'s network), ``max_features``, ``avg_scores``,
``max_scores`` (the classifier at every position, then 3D average / max of the scores) and
``two_step`` (spatial max, per-frame scores, temporal average: the default and the best), on
Hara et al.'s network with its temporal strides; ``dense`` removes them (one score per frame,
averaged over time; Table 2.2: 38.53 % strided vs 39.25 % dense, 2-step pooling).

Thesis (AFEW, 3D ResNet-18): 3D max features 31.72, 3D avg features 38.29, 3D max scores
37.08, 3D avg scores 36.72, 2-step 38.53 %. Only the ResNet column is reproduced: the
inflated VGG-16 reaches its classifier through fc6/fc7 per frame, so its pooling is the
2-step one by construction. Settings: ``configs.thesis_chapter2``; the strided network is
evaluated on one clip per video (``input.eval_clip='centre'``: it gives one score per clip),
the dense one over the whole video.

  python -m fer_jax.main --config=configs/thesis_pooling.py:max_features --workdir=runs/maxf
"""
from fer_jax import configs
from fer_jax.models import cnn3d


def get_config(arg: str = ""):
    args = configs.check_arg(arg, cnn3d.RESNET_POOLING + ("dense", "synthetic", "smoke"))
    variants = [a for a in args if a in cnn3d.RESNET_POOLING] or ["two_step"]
    if len(variants) > 1:
        raise ValueError(f"choose one pooling variant, got {', '.join(sorted(variants))}")
    config = configs.defaults()
    config.dataset = configs.real_dataset("afew", 7)
    config.model.name = "resnet3d_18"
    config.model.kwargs = dict(input_dropout=0.3, dropout=0.9)
    configs.thesis_chapter2(config)
    config.train.batch_size = 8
    if "synthetic" in args:
        configs.thesis_synthetic(config)
    config.model.kwargs.update(pooling=variants[0], dense="dense" in args)
    if "dense" not in args:  # one score per clip: no temporal pooling, no whole-video test
        config.model.temporal_pooling = ""
        config.eval.full_video = False
    if "smoke" in args:
        configs.smoke(config, model_kwargs=dict(width=1 / 8, stage_sizes=(1, 1, 1, 1)))
    return config
