"""Forsman & Singh: early-fusion CNN on 16 grayscale 100×100 frames (frames as channels), 8 HMDB
classes (fall, hug, jump, punch, run, smoke, throw, wave).

Stated by the paper: 16 frames taken every 3rd–6th frame depending on the video length;
grayscale; 100×100; Conv 32 → Conv 64 → max-pool → Dense 512 → Dense 8, 75,525,224
parameters; 20 epochs, batch 100; splits of 1,687 / 382 / 363 clips randomised by source
video; 47.1 % test accuracy.

Not stated, chosen here: evenly spaced frames over the whole video (equivalent to the
length-dependent stride), Adam with Keras' default learning rate 1e-3 and no schedule,
pixels standardised with mean 0.5 / std 0.25, no augmentation.

  python -m fer_jax.main --config=configs/early_fusion_hmdb8.py --workdir=runs/hmdb8
"""
from fer_jax import configs


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("smoke",))
    config = configs.defaults()
    config.dataset = configs.real_dataset("hmdb8", 8)
    config.input.update(modality="gray", clip_frames=16, train_clip="evenly_spaced",
                        eval_clip="evenly_spaced", image_size=100, mean=0.5, std=0.25)
    config.input.augment.hflip = 0.0
    config.model.name = "early_fusion_cnn"
    config.model.kwargs = dict()
    config.optimizer.update(name="adamw", learning_rate=1e-3, weight_decay=0.0,
                            grad_clip_norm=0.0)
    config.schedule.update(name="constant", warmup_epochs=0.0)
    config.train.update(batch_size=100, epochs=20)
    if "smoke" in args:
        configs.smoke(config, model_kwargs=dict(features=(4, 8), hidden_units=16),
                      clip_frames=16, image_size=32)  # 7 synthetic classes
    return config
