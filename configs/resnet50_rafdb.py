"""Belharbi et al.: AU-guided ResNet-50 on RAF-DB (basic emotions, 7 classes).

Belharbi et al. report, with CAM: accuracy 88.20 → 88.95 % and CAM-COS 0.55 → 0.70 (ATT-COS at
layer 5: 0.57 → 0.85) without → with the AU alignment. Stated for RAF-DB: 100 epochs, batch
32; the shared settings are in ``configs.au_guided_resnet50``. Protocol ``official``: the
train partition (10 % held out, stratified, for model selection) and the test partition.

  python -m fer_jax.main --config=configs/resnet50_rafdb.py --mode=preprocess \\
      --config.preprocess.manual_dir=/data/RAF-DB/basic
  python -m fer_jax.main --config=configs/resnet50_rafdb.py --workdir=runs/rafdb \\
      --config.model.init_from=weights/resnet50_imagenet.msgpack
  python -m fer_jax.main --config=configs/resnet50_rafdb.py:unguided --workdir=runs/rafdb_plain

Arguments after ``:``: ``unguided`` (λ = 0; ATT-COS and CAM-COS still measured), ``smoke``.
"""
from fer_jax import configs


def get_config(arg: str = ""):
    config = configs.defaults()
    config.dataset = configs.real_dataset("rafdb", 7)
    return configs.au_guided_resnet50(config, configs.check_arg(arg, ("unguided", "smoke")),
                                      batch_size=32, epochs=100)
