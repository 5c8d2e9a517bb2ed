"""Belharbi et al.: AU-guided ResNet-50 on AffectNet (7 classes, contempt left out).

Belharbi et al. report, with CAM: accuracy 60.88 → 62.37 % and CAM-COS 0.56 → 0.69 (ATT-COS at
layer 5: 0.64 → 0.82) without → with the AU alignment. Stated for AffectNet: 20 epochs, batch
224 (the authors' code); the shared settings are in ``configs.au_guided_resnet50``. Protocol
``official``: training.csv (10 % held out, stratified, for model selection) and
validation.csv as the test set (3,500 images).

  python -m fer_jax.main --config=configs/resnet50_affectnet.py --mode=preprocess \\
      --config.preprocess.manual_dir=/data/AffectNet
  python -m fer_jax.main --config=configs/resnet50_affectnet.py --workdir=runs/affectnet \\
      --config.model.init_from=weights/resnet50_imagenet.msgpack

Arguments after ``:``: ``unguided`` (λ = 0; ATT-COS and CAM-COS still measured), ``smoke``.
"""
from fer_jax import configs


def get_config(arg: str = ""):
    config = configs.defaults()
    config.dataset = configs.real_dataset("affectnet", 7)
    return configs.au_guided_resnet50(config, configs.check_arg(arg, ("unguided", "smoke")),
                                      batch_size=224, epochs=20)
