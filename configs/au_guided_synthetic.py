"""AU-guided training (Belharbi et al.) on the built-in synthetic benchmark, whose videos carry
their landmarks, hence exact AU heatmaps.

A narrow 2D ResNet-50-style network (bottleneck blocks, one per stage, an eighth of the
channels) with the "large maps" of Belharbi et al. (layer3 / layer4 stride 1: 6×6 maps of 48-pixel
frames) classifies 8 evenly spaced frames per video (per-frame logits averaged). The loss is
cross-entropy + λ · (1 − cos(T, A)), T = channel mean of the last block (their layer 5)
per frame, A = the AU heatmaps of the video's expression; λ = 4 as Belharbi et al. use on RAF-DB.
ATT-COS and CAM-COS are measured on validation after every epoch and by --mode=eval.

  python -m fer_jax.main --config=configs/au_guided_synthetic.py --workdir=runs/au_guided
  python -m fer_jax.main --config=configs/au_guided_synthetic.py:unguided --workdir=runs/plain
  python launch/sweep.py --config=configs/au_guided_synthetic.py --workdir=runs/au_lambda \\
      --seeds=0,1,2 --set=au_guidance.weight=0,1,4,16 --eval \\
      --plot=au_guidance.weight

Arguments after ``:``: ``unguided`` (λ = 0, the alignment still measured: the baseline),
``timesformer`` (the same loss on the patch tokens of the synthetic TimeSformer's block 2 of 4),
``smoke`` (a tiny run of a few seconds used by the tests).
"""
from fer_jax import configs


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("unguided", "timesformer", "smoke"))
    config = configs.defaults()
    config.dataset = configs.synthetic_dataset(image_size=48)
    config.input.image_size = 48
    if "timesformer" in args:  # the default synthetic TimeSformer: 8×8 patches → 6×6 tokens
        config.au_guidance.layers = "blocks_2"
    else:
        config.model.name = "resnet2d_50"
        config.model.kwargs = dict(stage_sizes=(1, 1, 1, 1), width=0.125, large_maps=True,
                                   dropout=0.0)
    config.au_guidance.update(weight=0.0 if "unguided" in args else 4.0, measure=True)
    config.train.epochs = 8
    if "smoke" in args:
        kwargs = (dict(hidden_size=32, num_layers=3, num_heads=2) if "timesformer" in args
                  else dict(stage_sizes=(1, 1, 1, 1), width=0.125))
        configs.smoke(config, model_kwargs=kwargs)
    return config
