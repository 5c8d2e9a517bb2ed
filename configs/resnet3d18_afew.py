"""Ayral's thesis, chapter 2: dense 3D ResNet-18 with 2-step pooling on AFEW.

Stated by the thesis: Hara et al.'s Kinetics-pretrained ResNet-18 (shortcut A, 33M
parameters); new head a 1×1×1 convolution to the 7 classes; the temporal stride removed
("dense", Table 2.2: 39.25 % vs 38.53 %); 2-step pooling — spatial max of the features,
temporal average of the per-frame scores — the best of Table 2.1; Adam; weight decay 0.3 for
the network (0.2 for the classifier); dropout 30 % on the input and 90 % on the features;
early stopping after 10 epochs without improvement; 16-frame clips; 112×112 faces;
augmentation as in chapter 3; AFEW protocol as in vgg16_3d_afew.py.

Not stated, chosen here: learning rate 1e-4 (the thesis grid-searched it) with AdamW's
decoupled weight decay 0.3 on all layers, batch 8, early stopping on validation accuracy
(the thesis uses the validation loss), normalisation mean 0.5 / std 0.25.

  python -m fer_jax.main --config=configs/resnet3d18_afew.py --workdir=runs/resnet18_afew
"""
from fer_jax import configs


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("smoke",))
    config = configs.defaults()
    config.dataset = configs.real_dataset("afew", 7)
    config.model.name = "resnet3d_18"
    config.model.kwargs = dict(pooling="two_step", input_dropout=0.3, dropout=0.9)
    configs.thesis_chapter3(config)  # clips, augmentation, dense model
    config.model.temporal_pooling = "mean"  # 2-step: temporal average of per-frame scores
    config.eval.full_video = False  # chapter 2 evaluates clips
    config.optimizer.update(name="adamw", learning_rate=1e-4, weight_decay=0.3,
                            accumulation_steps=1)
    config.schedule.update(name="constant", warmup_epochs=0.0)
    config.train.batch_size = 8
    if "smoke" in args:
        configs.smoke(config, model_kwargs=dict(width=1 / 8, stage_sizes=(1, 1, 1, 1)),
                      clip_frames=8)
    return config
