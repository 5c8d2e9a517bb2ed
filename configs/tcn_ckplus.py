"""Gund et al.: temporal convolutional network (TCN) on 68 facial landmarks × 20 frames, CK+.

Stated by the paper: 7 classes (the 6 basic expressions of CK+ without contempt, plus a
neutral class built from first frames); videos resampled to 20 frames; OpenFace 68-point
landmarks normalised by the image size; SGD, learning rate 1e-3, "rate decay" 1e-4 (Keras'
time-based decay, lr / (1 + 1e-4 · update)), momentum 0.3; 6-fold cross-validation holding
out 15 %; 330,119 parameters (models/landmark.py documents the layer reading); 99.57 %.

Not stated, chosen here: batch 32, 100 epochs, no augmentation besides horizontal flips
(which mirror the landmarks and swap their left/right indices), coordinates fed as x/S, y/S
in [0, 1] without further standardisation.

  python -m fer_jax.main --config=configs/tcn_ckplus.py --workdir=runs/tcn_ckplus
"""
from fer_jax import configs


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("smoke",))
    config = configs.defaults()
    config.dataset = configs.real_dataset("ckplus", 7)
    config.input.update(modality="landmarks", clip_frames=20, train_clip="evenly_spaced",
                        eval_clip="evenly_spaced", image_size=224, mean=0.0, std=1.0)
    config.model.name = "tcn"
    config.model.kwargs = dict()
    config.optimizer.update(name="sgd", learning_rate=1e-3, momentum=0.3, weight_decay=0.0,
                            grad_clip_norm=0.0)
    config.schedule.update(name="inverse_time", decay_rate=1e-4)
    config.train.update(batch_size=32, epochs=100)
    if "smoke" in args:
        configs.smoke(config, model_kwargs=dict(), clip_frames=20, image_size=32)
    return config
