"""TimeSformer (divided space-time attention) on the built-in synthetic benchmark.

The default experiment and sanity check: needs no download and trains to about 90 % validation
accuracy in under five minutes on a 2-core CPU. To fit that budget it uses 32×32 frames,
moderate nuisances (0.25) and flip-only augmentation: a TimeSformer trained from scratch on
few thousand clips learns the expressions only slowly under random crops/rotations/colour
jitter, which the config keeps available (``input.augment``) for longer runs.

  python -m fer_jax.main --config=configs/synthetic.py --workdir=runs/synthetic
  python -m fer_jax.main --config=configs/synthetic.py:smoke --workdir=/tmp/smoke

Arguments after ``:``: ``smoke`` (a tiny run of a few seconds used by the tests).
Any field can be overridden: ``--config.train.epochs=3 --config.optimizer.learning_rate=1e-3``.
"""
import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    # The procedural face-video benchmark (fer_jax/data/synthetic.py).
    config.dataset = dict(
        name="synthetic",
        num_classes=7,
        num_frames=24,          # frames per video; the expression event lies somewhere inside
        image_size=32,
        num_subjects=60,        # identities, split 70/15/15 (subject-independent)
        nuisance=0.25,          # occluders, brightness drops, jitter, distractor expressions
        seed=0,
        train_videos=1800,
        validation_videos=280,
        test_videos=280,
    )

    config.input = dict(
        clip_frames=8,              # frames per clip fed to the model
        train_clip="evenly_spaced", # evenly_spaced | random | centre
        eval_clip="evenly_spaced",
        image_size=32,              # model input size (frames are warped to it)
        mean=0.5, std=0.25,         # normalisation of [0, 1] pixels, applied on device
        num_workers=1,              # Grain worker processes for training (0 = in-process)
        augment=dict(hflip=0.5, rotation=0.0, crop_scale=(1.0, 1.0),
                     brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0),
    )

    config.model = dict(
        name="timesformer",
        kwargs=dict(patch_size=8, hidden_size=64, num_layers=4, num_heads=4, mlp_ratio=2.0,
                    dropout=0.0, attention_dropout=0.0, drop_path_rate=0.0),
    )

    config.optimizer = dict(
        name="adamw",             # adamw | sgd
        learning_rate=1e-3,       # peak learning rate
        weight_decay=0.05,
        momentum=0.9,             # sgd only
        nesterov=False,           # sgd only
        grad_clip_norm=1.0,       # 0 disables
        accumulation_steps=1,     # optax.MultiSteps: one update every k batches
    )
    config.schedule = dict(
        name="cosine",            # cosine | constant | plateau
        warmup_epochs=0.3,
        plateau_factor=0.5,       # plateau: multiply the lr by this when the epoch's mean
        plateau_patience=2,       # training loss has not improved for this many epochs
    )

    config.train = dict(
        batch_size=16,
        epochs=20,
        label_smoothing=0.0,
        log_every_steps=20,
        checkpoint_every_steps=50,   # mid-epoch checkpoints (0 = only at epoch ends)
        keep_checkpoints=2,
        best_metric="accuracy",      # validation metric that selects the best checkpoint
        early_stopping_patience=0,   # epochs without improvement before stopping (0 = off)
    )
    config.eval = dict(split="test")  # split used by --mode=eval

    if arg == "smoke":
        config.dataset.update(num_frames=12, image_size=32, train_videos=48,
                              validation_videos=20, test_videos=20, num_subjects=20)
        config.input.update(clip_frames=4, image_size=32, num_workers=0)
        config.model.kwargs.update(hidden_size=32, num_layers=1, num_heads=2)
        config.train.update(batch_size=8, epochs=2, log_every_steps=2,
                            checkpoint_every_steps=2)
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use '' or 'smoke'")
    return config
