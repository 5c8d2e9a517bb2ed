"""Gund et al.: spatial CNN (SCN) on 20 stacked 224×224 grayscale frames, CK+.

Stated by the paper: 7 classes (see tcn_ckplus.py); 20 frames per video stacked as channels,
224×224 grayscale; three blocks of two 3×3 convolutions (64, 128, 256) with batch
normalisation and 2×2 max-pooling, FC 256, FC 7; SGD, learning rate 1e-3, rate decay 1e-4,
momentum 0.7; 6-fold cross-validation; 5,647,943 parameters (no reading of the text reaches
that count: models/landmark.py documents the closest one); 95.67 %.

Not stated, chosen here: batch 16, 50 epochs, pixels standardised with mean 0.5 / std 0.25,
horizontal flips.

  python -m fer_jax.main --config=configs/scn_ckplus.py --workdir=runs/scn_ckplus
"""
from fer_jax import configs


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("smoke",))
    config = configs.defaults()
    config.dataset = configs.real_dataset("ckplus", 7)
    config.input.update(modality="gray", clip_frames=20, train_clip="evenly_spaced",
                        eval_clip="evenly_spaced", image_size=224, mean=0.5, std=0.25)
    config.model.name = "scn"
    config.model.kwargs = dict()
    config.optimizer.update(name="sgd", learning_rate=1e-3, momentum=0.7, weight_decay=0.0,
                            grad_clip_norm=0.0)
    config.schedule.update(name="inverse_time", decay_rate=1e-4)
    config.train.update(batch_size=16, epochs=50)
    if "smoke" in args:
        configs.smoke(config, model_kwargs=dict(features=(4, 8, 8), hidden_units=16),
                      clip_frames=20, image_size=32)
    return config
