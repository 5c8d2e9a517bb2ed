"""Du Toit: TimeSformer (divided space-time attention) trained from scratch on CREMA-D.

Stated by the paper: 6 classes (anger, disgust, fear, happiness, neutral, sadness); 7,442 clips
of 91 actors split randomly 90 % train / 5 % validation / 5 % test; faces cropped per frame
(FaceNet detector); 8 evenly spaced frames per video; 14×14 patches per frame; divided
space-time attention; no pretraining; 81 % test accuracy.

Not stated, chosen here: 224×224 input with 16-pixel patches (gives the stated 14×14 patches),
ViT-B width/depth (768, 12 layers, 12 heads — the TimeSformer default), and the official
TimeSformer recipe for the optimiser: SGD with momentum 0.9, learning rate 0.005 with cosine
decay, weight decay 1e-4, batch 8, 15 epochs; ImageNet-style normalisation (0.45, 0.225) and
horizontal flips.

Explanations (``--mode=report`` / ``explain``; ``explain.methods=''``, the defaults for attention
models): the paper's Grad-CAM, Rollout with the minimum over heads ("For the standard Rollout
method, the minimum attention head is used", Rollout-min), Rollout-Grad (no fusion stated:
Rollout-Grad-mean) and TIBAV, on the spatial attention.

  python -m fer_jax.main --config=configs/timesformer_cremad.py --workdir=runs/cremad
  python -m fer_jax.main --config=configs/timesformer_cremad.py:smoke --workdir=/tmp/smoke
"""
from fer_jax import configs


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("smoke",))
    config = configs.defaults()
    config.dataset = configs.real_dataset("cremad", 6)
    config.input.update(clip_frames=8, train_clip="evenly_spaced", eval_clip="evenly_spaced",
                        image_size=224, mean=0.45, std=0.225)
    config.model.kwargs = dict(patch_size=16, hidden_size=768, num_layers=12, num_heads=12,
                               mlp_ratio=4.0, attention_type="divided_space_time",
                               dropout=0.0, attention_dropout=0.0, drop_path_rate=0.0)
    config.optimizer.update(name="sgd", learning_rate=0.005, momentum=0.9, weight_decay=1e-4,
                            grad_clip_norm=0.0)
    config.schedule.update(name="cosine", warmup_epochs=0.0)
    config.train.update(batch_size=8, epochs=15, checkpoint_every_steps=500)
    if "smoke" in args:
        configs.smoke(config, model_kwargs=dict(patch_size=8, hidden_size=32, num_layers=1,
                                                num_heads=2),
                      clip_frames=8)
        config.dataset.num_classes = 6
    return config
