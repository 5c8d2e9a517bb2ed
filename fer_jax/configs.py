"""Building blocks of the experiment configs in ``configs/`` (one file per experiment).

``defaults()`` holds every field the trainer reads, with its meaning; an experiment file
starts from it and changes what its paper states. ``synthetic_dataset()`` and ``smoke()``
run any experiment at tiny size on the built-in synthetic benchmark (``:smoke``), which is
how the tests exercise every paper's configuration without its dataset.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import ml_collections

from fer_jax.errors import UserError


def load(spec: str) -> ml_collections.ConfigDict:
    """The config of an experiment file as ``--config=`` reads it: ``"configs/X.py"`` or
    ``"configs/X.py:arg"`` → that file's ``get_config(arg)`` (unlocked: fields may be set,
    as ``--config.a.b=value`` does). Raises UserError for a missing file or one without
    ``get_config``."""
    path, _, arg = spec.partition(":")
    if not Path(path).is_file():
        raise UserError(f"config file {path} not found")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UserError(f"config file {path} defines no get_config() function")
    return module.get_config(arg) if arg else module.get_config()


def synthetic_dataset(**overrides) -> dict:
    """``config.dataset`` for the procedural face-video benchmark (fer_jax/data/synthetic.py)."""
    dataset = dict(
        name="synthetic",
        num_classes=7,
        num_frames=24,          # frames per video, or an inclusive (min, max) pair drawn per
                                # video; the expression event lies somewhere inside
        onset_frames=(2, 4),    # inclusive ranges of the event's phase lengths in frames
        apex_frames=(4, 8),     # (neutral → onset → apex → offset → neutral; each capped so
        offset_frames=(2, 4),   # that the event fits the video)
        image_size=32,
        num_subjects=60,        # identities, split 70/15/15 (subject-independent)
        nuisance=0.25,          # occluders, brightness drops, jitter, distractor expressions
        seed=0,
        train_videos=1800,
        validation_videos=280,
        test_videos=280,
    )
    dataset.update(overrides)
    return dataset


def real_dataset(name: str, num_classes: int, **overrides) -> dict:
    """``config.dataset`` for a real dataset, read from the records of ``--mode=preprocess``
    (layouts: fer_jax/data/layouts.py; protocols: fer_jax/data/protocols.py)."""
    dataset = dict(
        name=name,
        num_classes=num_classes,
        data_dir="",            # TFDS data directory ('' = ~/tensorflow_datasets or $TFDS_DATA_DIR)
        protocol="",            # experimental protocol ('' = the dataset's default)
        fold=0,                 # fold of a cross-validation protocol
        split_seed=0,           # seed of random splits (e.g. the 80/20 draw of AFEW Train)
        codebook="figure",      # AU codebook of the AU maps (action_units.CODEBOOKS)
    )
    dataset.update(overrides)
    return dataset


def defaults() -> ml_collections.ConfigDict:
    """Every config field, with the synthetic benchmark and a small TimeSformer."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = synthetic_dataset()

    config.preprocess = dict(       # --mode=preprocess of real datasets (data/preprocess.py)
        manual_dir="",              # folder with the raw files as distributed
        backend="dlib",             # dlib | face_alignment | opencv (data/faces.py)
        crop_size=0,                # aligned face crop side (0 = input.image_size)
        margin=0.25,                # context around the face, fraction of its size per side
        smoothing=5,                # frames of the moving average over face boxes (1 = off)
        missing="carry",            # frames without a face: carry (keep) | drop
        jpeg_quality=95,            # stored frames
        workers=2,                  # processes (0 = in this process)
        fan_weights="",             # face_alignment: local 2DFAN-4 weights (.pth.tar)
        detector_weights="",        # face_alignment: local face-detector weights
    )

    config.input = dict(
        modality="rgb",             # rgb | gray | landmarks (model input, see data/pipeline.py)
        clip_frames=8,              # frames per clip fed to the model
        train_clip="evenly_spaced", # evenly_spaced | random (uniform, Eq. 3.7) | centre
        eval_clip="evenly_spaced",  # (evenly_spaced: temporal resize of the whole video)
        pad="repeat",               # clips of videos shorter than clip_frames: repeat the last
                                    # frame | loop (wrap round) | zeros (black frames);
                                    # evenly_spaced never pads
        image_size=32,              # model input size (frames are warped to it)
        mean=0.5, std=0.25,         # normalisation of [0, 1] pixels/coordinates, on device
                                    # (scalars or per-channel tuples)
        num_workers=1,              # Grain worker processes for training (0 = in-process)
        augment=dict(hflip=0.5, rotation=0.0, crop_scale=(1.0, 1.0),
                     brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0),
    )

    config.model = dict(
        name="timesformer",
        kwargs=dict(patch_size=8, hidden_size=64, num_layers=4, num_heads=4, mlp_ratio=2.0,
                    dropout=0.0, attention_dropout=0.0, drop_path_rate=0.0),
        temporal_pooling="",      # for dense models (per-frame scores): mean | max | softmax |
        pooling_gamma=1.0,        # adaptive (models/pooling.py); gamma of 'softmax'
        attention=dict(           # attention module of a 3D CNN (models/attention.py):
            name="",              # mask | self_attention | stn ('' = none)
            kwargs={},            # e.g. kind='3d', context='multiplicative'; num_heads, ...
        ),
        init_from="",             # converted pretrained weights (.msgpack from
                                  # python -m fer_jax.models.convert) or the workdir of a
                                  # trained run; '' = from scratch
        init_exclude="",          # regular expression over variable paths (re.search;
                                  # 'params/fc/kernel', 'batch_stats/...'): matching arrays
                                  # are not loaded from init_from but kept at their fresh
                                  # initialisation (e.g. a new classifier); '' = none
        init_exclude_zeros=False, # the excluded arrays start at zero instead (big_vision's
                                  # head_zeroinit)
        # How the model computes (not its variables: a run may be resumed or evaluated with
        # other values; explain, report and predict always use float32, explicit attention
        # and no remat, whatever these say):
        precision="float32",      # float32 | bfloat16 | float16: the layers' computation
                                  # dtype; parameters, optimiser state, logits and losses
                                  # stay float32; float16 trains with dynamic loss scaling
                                  # (optimizer.loss_scale; fer_jax/loss_scaling.py)
        attention_implementation="explicit",  # explicit | auto | xla | cudnn (TimeSformer,
                                  # the self_attention module): 'explicit' forms the softmax
                                  # probabilities; the others call jax.nn.dot_product_attention
                                  # with implementation=None (JAX's choice), 'xla' or 'cudnn'
                                  # (fused kernel; NVIDIA GPUs, precision bfloat16 or
                                  # float16), and the probabilities are still formed
                                  # whenever an explanation reads them
        remat="",                 # '' | block: recompute every block (TimeSformer block,
                                  # 3D CNN stage / residual / Inception block, ResNet-50
                                  # block) in the backward pass instead of keeping its
                                  # activations: less memory, one more forward per step
        remat_policy="nothing_saveable",  # what a recomputed block still keeps:
                                  # nothing_saveable | dots_saveable |
                                  # dots_with_no_batch_dims_saveable | everything_saveable
                                  # (jax.checkpoint_policies)
    )

    config.optimizer = dict(
        name="adamw",             # adamw | sgd
        learning_rate=1e-3,       # peak learning rate
        weight_decay=0.05,
        momentum=0.9,             # sgd only
        nesterov=False,           # sgd only
        grad_clip_norm=1.0,       # 0 disables
        accumulation_steps=1,     # optax.MultiSteps: one update every k batches
        trainable="",             # regular expression over parameter paths ('a/b/kernel'):
                                  # only matching parameters train, the rest stay frozen
                                  # ('' = all train)
        scaled="",                # regular expression over parameter paths (re.search):
        scale=1.0,                # matching parameters train at scale × the learning rate,
                                  # their weight decay scaled with it (a PyTorch parameter
                                  # group with lr = scale · lr; '' = none), e.g. pretrained
                                  # layers at 1/200 of a new classifier's rate
        loss_scale=dict(          # model.precision='float16' only: dynamic loss scaling
            initial=2.0 ** 15,    # the loss scale of a fresh run (resumes keep theirs)
            period=2000,          # finite-gradient steps in a row before it is multiplied
            factor=2,             # by factor; a step with a non-finite gradient is skipped
        ),                        # (no update) and divides it by factor (not below 1)
    )
    config.schedule = dict(
        name="cosine",            # cosine | constant | plateau | inverse_time | step
        warmup_epochs=0.3,        # cosine, constant and plateau: linear warm-up
        decay_rate=0.0,           # inverse_time: lr / (1 + decay_rate · update) (Keras decay)
        plateau_factor=0.5,       # plateau: multiply the lr by this when the epoch's mean
        plateau_patience=2,       # training loss has not improved for this many epochs
        step_epochs=4.0,          # step: multiply the lr by step_factor every step_epochs
        step_factor=0.9,          # epochs (PyTorch's StepLR; Belharbi et al.: 4 and 0.9)
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
        shuffle_labels=False,        # train on the training labels permuted over the videos
                                     # (seeded by config.seed; validation keeps the true
                                     # labels): the model of Adebayo et al.'s data
                                     # randomisation test (explain.compare_workdir)
    )
    config.eval = dict(
        split="test",             # split used by --mode=eval
        full_video=False,         # score every frame of every video (dense models), then
        max_frames=0,             # clip max-pool over clip_frames and softmax pooling over the
        pooling_gamma=0.0,        # clips with gamma_p (0 = average, 1e6 = max); videos are
                                  # padded to max_frames
        clips=0,                  # K > 0: K clips of clip_frames at evenly spaced starts per
                                  # video, mean of their logits (not with full_video; evaluations
                                  # with ground truth keep eval_clip); 0 = one eval_clip clip
    )
    config.explain = dict(        # --mode=explain and --mode=report (fer_jax/explain.py)
        methods="",               # attribution methods, comma-separated, with options:
                                  # 'grad_cam,rollout(head_fusion="max")'; '' = the model's
                                  # defaults (evaluation/explainers.py; attention models: Du
                                  # Toit's Grad-CAM, Rollout-min, Rollout-Grad-mean, TIBAV)
        split="test",
        videos="0,1,2,3",         # explain: video indices of the split to explain
        target="predicted",       # explain: predicted | label (the class explained)
        fps=4.0,                  # explain: GIF/MP4 frame rate
        upscale=4,                # explain: nearest-neighbour enlargement of the frames
        batch_size=0,             # report: videos per batch (0 = train.batch_size)
        max_videos=0,             # report: first N videos of the split (0 = all)
        grid=0,                   # occlusion cells per side (0 = the model's patch grid,
                                  # else 8)
        fill=0.0,                 # occluded pixels, [0, 1] units (0 = black)
        fractions=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5),  # Du Toit: share of cells per frame
        frame_counts=(0, 1, 2, 3, 4),              # Du Toit: frames occluded
        deletion_steps=16,        # deletion / insertion curve points − 1
        min_intensity=0.5,        # ground truth: frames at least this expressive count
        region_threshold=0.5,     # ground truth: AU heatmap level inside the region
        cosine="normalised",      # ground truth, CAM-COS: normalised = each map min-max
                                  # normalised to [0, 1] per video (after upsampling to the
                                  # AU heatmap), as Belharbi et al. | raw (the signed map)
        examples_per_class=1,     # report: example videos per class with overlays
        measurements="",          # report: measurement names, comma-separated ('' = the
                                  # default ones: all but sensitivity and the sanity
                                  # checks randomisation, input_invariance,
                                  # data_randomisation; 'default' stands
                                  # for them, e.g. 'default,randomisation'; the list:
                                  # fer_jax/evaluation/measurements/__init__.py)
        compare_workdir="",       # report, data_randomisation: workdir of the same model
                                  # trained with train.shuffle_labels=True (its newest
                                  # checkpoint is compared)
    )
    config.predict = dict(        # --mode=predict on any video / image / folder (fer_jax/predict.py)
        input="",                 # a video, an image, or a folder of them
        class_names="",           # comma-separated, in the model's output order
                                  # ('' = the dataset's)
        stride=0,                 # video models: frames between sliding-clip starts
                                  # (0 = input.clip_frames // 2, at least 1)
        batch_size=32,            # clips (frames of frame models) per forward pass (fewer
                                  # clips: padded to the next power of two only)
        chunk_frames=300,         # frames decoded and face-tracked at a time (memory bound)
        upsample=1,               # dlib detector upsampling (0 = faces above ~80 px only,
                                  # 4× faster; 2 = faces down to ~20 px)
        detect_size=640,          # longer side frames are shrunk to for face detection only
                                  # (0 = full resolution; landmarks and crops use full frames)
        pooling_gamma=1.0,        # video-level softmax pooling over face frames (Eq. 3.3)
        au_alignment=True,        # measure each map against the AU regions of the
                                  # predicted class (needs landmarks: dlib / face_alignment)
        overlay=True,             # write overlay.mp4 and overlay.gif
        overlay_width=960,        # width of the overlay video (panels tiled 2 per row)
        gif_frames=48,            # frames of overlay.gif (evenly spaced, at most 480 px wide)
    )
    config.au_guidance = dict(    # AU-guided training, Belharbi et al. (fer_jax/au_guidance.py)
        weight=0.0,               # λ of CE + λ·(1 − cos(T_l, A)); 0 = cross-entropy only
        layers="",                # comma-separated module paths whose channel mean T_l is
                                  # aligned ('' = the model's attribution_layer)
        measure=False,            # report ATT-COS / CAM-COS in validation and --mode=eval
                                  # (always on when weight > 0; needs landmarks)
        cam_method="",            # CAM-COS map: '' = cam (GAP → linear heads) else grad_cam
        cosine="normalised",      # reported ATT-COS / CAM-COS (not the loss, always the raw
                                  # cosine): normalised = as Belharbi et al.'s evaluation code,
                                  # CAM min-max normalised to [0, 1], layer attention shifted
                                  # by −min where negative | minmax (both min-max) | raw (both
                                  # as they are); per video over the clip, after upsampling
                                  # to A (evaluation/localisation.py)
    )
    config.sampler = dict(        # score-table clip sampling (fer_jax/sampling; Ayral ch. 3)
        name="",                  # '' = input.train_clip | uniform | stochastic_softmax |
                                  # reinforce
        gamma=1.0,                # gamma_s of Eq. 3.8
        warmup_epochs=3,          # uniform draws, no table updates
        exploration_epochs=5,     # deterministic exploration (stochastic_softmax)
        radius=0,                 # Eq. 3.9 propagation radius (0 = input.clip_frames)
        learning_rate=0.1,        # reinforce only
        baseline_momentum=0.9,    # reinforce only
        map_videos=8,             # training videos drawn in sampling_maps/ (0 = none)
        scoring="clean",          # the drawn clip's table score (true-class logit): 'clean' =
                                  # the un-augmented clip, eval mode, pre-update parameters
                                  # (default; the thesis' text, §3.3.2.6, Table 3.8 p. 93) |
                                  # 'augmented' = the training forward pass's own logits
                                  # (train mode; the author's public code)
    )
    return config


def thesis_chapter3(config: ml_collections.ConfigDict, *, clip_frames: int = 16,
                    image_size: int = 112, max_frames: int = 128) -> ml_collections.ConfigDict:
    """Training settings shared by the chapter-3 experiments of Ayral's thesis.

    Stated: dense 3D CNN (no temporal stride) whose per-frame scores are max-pooled over the
    F = 16 frames of the training clip; uniformly sampled clips (Eq. 3.7); SGD with momentum
    0.9; back-propagation every 4 steps; early stopping with patience 10; augmentation drawn
    once per video: horizontal flip 0.5, rotation ±20°, random crop, colour jitter
    (0.2, 0.2, 0.2, 0.1); 112×112 faces; at test time every frame is scored, clip max-pooling
    with kernel F, then average pooling over the clips for the uniform baseline (γ_p = 0; see
    ``stochastic_softmax`` for the other). From the public reference code: learning rate 5e-4,
    weight decay 1e-3, learning rate halved on plateau. Chosen (not stated): crop side 50–100 %
    of the frame ("half spatial size" read as the smallest crop), plateau patience 3, videos
    padded to ``max_frames`` at test time.
    """
    config.input.update(clip_frames=clip_frames, train_clip="random", eval_clip="centre",
                        image_size=image_size)
    config.input.augment = dict(hflip=0.5, rotation=20.0, crop_scale=(0.5, 1.0),
                                brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1)
    config.model.update(temporal_pooling="max")
    config.model.kwargs.update(dense=True)
    config.optimizer.update(name="sgd", learning_rate=5e-4, momentum=0.9, weight_decay=1e-3,
                            grad_clip_norm=0.0, accumulation_steps=4)
    config.schedule.update(name="plateau", warmup_epochs=0.0, plateau_factor=0.5,
                           plateau_patience=3)
    config.train.update(epochs=100, early_stopping_patience=10, checkpoint_every_steps=500)
    config.eval.update(full_video=True, max_frames=max_frames, pooling_gamma=0.0)
    return config


def afew_vgg16(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The thesis' main FER model and dataset: inflated VGG-16 (3×3×3 kernels, dropout 0.5)
    on AFEW's 7 classes, chapter-3 training, the 2D source model's normalisation (mean
    0.507395516207, std 0.255128989415), batch 8 (chosen)."""
    config.dataset = real_dataset("afew", 7)
    config.model.name = "vgg16_3d"
    config.model.kwargs = dict(time_kernel=3, fc_dropout=0.5, head_dropout=0.5)
    thesis_chapter3(config)
    config.input.update(mean=0.507395516207, std=0.255128989415)
    config.train.batch_size = 8
    return config


def hmdb51_i3d(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The thesis' action-recognition check: I3D (dropout 0.5) on HMDB-51 split 1,
    chapter-3 training at 224×224 with I3D's [-1, 1] input range, batch 16."""
    config.dataset = real_dataset("hmdb51", 51, protocol="split1")
    config.model.name = "i3d"
    config.model.kwargs = dict(dropout=0.5)
    thesis_chapter3(config, image_size=224, max_frames=512)
    config.input.update(mean=0.5, std=0.5)
    config.train.batch_size = 16
    return config


def thesis_chapter2(config: ml_collections.ConfigDict, *, clip_frames: int = 16,
                    image_size: int = 112, max_frames: int = 128) -> ml_collections.ConfigDict:
    """Training settings of chapter 2 of Ayral's thesis: ``thesis_chapter3``'s clips,
    augmentation and dense model, with the chapter's own optimisation and pooling.

    Stated: Adam, weight decay 0.3 for the 3D CNN and 0.2 for the classifier, dropout 30 % on
    the input and 90 % on the features (set in the model's kwargs where it has them), early
    stopping after 10 epochs without improvement, 2-step pooling (per-frame scores averaged
    over time), and at test time the fully convolutional network over the whole video.
    Chosen (not stated): learning rate 1e-4 (the thesis grid-searched it), AdamW's decoupled
    decay 0.3 on every layer, early stopping on validation accuracy (the thesis: the loss);
    the whole-video test is ``eval.full_video`` with clip-mean pooling and γ_p = 0.
    """
    thesis_chapter3(config, clip_frames=clip_frames, image_size=image_size,
                    max_frames=max_frames)
    config.model.temporal_pooling = "mean"
    config.optimizer.update(name="adamw", learning_rate=1e-4, weight_decay=0.3,
                            accumulation_steps=1)
    config.schedule.update(name="constant", warmup_epochs=0.0)
    return config


def thesis_synthetic(config: ml_collections.ConfigDict, *,
                     epochs: int = 6) -> ml_collections.ConfigDict:
    """The thesis' chapter-2 and chapter-4 comparisons at CPU scale on the synthetic benchmark:
    24-frame videos with one expression event at a random time, 8-frame training clips, a
    dense 3D ResNet-18 (width 1/8, 2-step pooling: spatial max, per-frame scores, temporal
    mean), AdamW 2e-3 with a cosine schedule, 300 training videos, and the whole-video test
    (clip-mean pooling, γ_p = 0). Small enough for 3 seeds × 4 settings on a 2-core CPU."""
    config.dataset = synthetic_dataset(num_frames=24, train_videos=300, validation_videos=100,
                                       test_videos=200)
    config.model.name = "resnet3d_18"
    config.model.kwargs = dict(width=1 / 8, dense=True, pooling="two_step")
    config.model.temporal_pooling = "mean"
    config.input.update(clip_frames=8, train_clip="random", eval_clip="centre", image_size=32)
    config.input.augment = dict(hflip=0.5, rotation=0.0, crop_scale=(1.0, 1.0),
                                brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    config.optimizer.update(name="adamw", learning_rate=2e-3, weight_decay=1e-4,
                            grad_clip_norm=1.0, accumulation_steps=1)
    config.schedule.update(name="cosine", warmup_epochs=0.5)
    config.train.update(batch_size=16, epochs=epochs, checkpoint_every_steps=0,
                        early_stopping_patience=0)
    config.eval.update(full_video=True, max_frames=24, pooling_gamma=0.0)
    return config


def stochastic_softmax(config: ml_collections.ConfigDict,
                       gamma: float) -> ml_collections.ConfigDict:
    """The thesis' sampler (Eqs. 3.8, 3.9; Algorithm 3.1): 3 warm-up and 5 exploration epochs,
    propagation radius F, clean scoring, and softmax pooling at test time with γ_p = γ_s."""
    config.sampler.update(name="stochastic_softmax", gamma=gamma, warmup_epochs=3,
                          exploration_epochs=5, radius=0)
    config.eval.pooling_gamma = gamma
    return config


def au_guided_resnet50(config: ml_collections.ConfigDict, args: set[str], *, batch_size: int,
                       epochs: int) -> ml_collections.ConfigDict:
    """The image classifier of Belharbi et al.: ResNet-50 with large maps (layer3 / layer4
    stride 1, 28×28 maps at 224 px) trained with cross-entropy + 4 · (1 − cos(T, A)) on the
    last block.

    Stated: faces aligned and resized to 256×256, random 224×224 crops; SGD; λ ≈ 4 (the
    compromise of Fig. 5); alignment on the last ResNet-50 stage; model selection by accuracy.
    From the authors' public code (AffectNet, used for both datasets here because the paper
    transfers RAF-DB's hyper-parameters): learning rate 0.002, momentum 0.9, Nesterov, weight
    decay 5e-4, StepLR(4 epochs, ×0.9). Chosen: horizontal flips, ImageNet normalisation (set
    ``model.init_from`` to torchvision's ImageNet ResNet-50 converted with
    ``python -m fer_jax.models.convert resnet2d``); evaluation resizes the whole 256-pixel
    face to 224 (no centre crop).

    ``args`` (the config file's words): ``unguided`` sets λ = 0 (ATT-COS and CAM-COS still
    measured: the baseline), ``smoke`` shrinks the run to the synthetic benchmark.
    """
    config.preprocess.crop_size = 256
    config.input = dict(config.input.to_dict(), clip_frames=1, train_clip="centre",
                        eval_clip="centre", image_size=224, mean=(0.485, 0.456, 0.406),
                        std=(0.229, 0.224, 0.225))  # per channel: replaces the scalars
    config.input.augment = dict(hflip=0.5, rotation=0.0, crop_scale=(0.875, 0.875),
                                brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    config.model.name = "resnet2d_50"
    config.model.kwargs = dict(large_maps=True, dropout=0.0)
    config.optimizer.update(name="sgd", learning_rate=0.002, momentum=0.9, nesterov=True,
                            weight_decay=5e-4, grad_clip_norm=0.0)
    config.schedule.update(name="step", warmup_epochs=0.0, step_epochs=4, step_factor=0.9)
    config.train.update(batch_size=batch_size, epochs=epochs, checkpoint_every_steps=1000)
    config.au_guidance.update(weight=0.0 if "unguided" in args else 4.0, layers="",
                              measure=True, cam_method="cam")
    if "smoke" in args:
        smoke(config, model_kwargs=dict(stage_sizes=(1, 1, 1, 1), width=0.125), clip_frames=1)
    return config


def smoke(config: ml_collections.ConfigDict, *, model_kwargs: dict, clip_frames: int = 4,
          image_size: int = 32, batch_size: int = 8) -> ml_collections.ConfigDict:
    """Shrinks ``config`` to a run of seconds on the synthetic benchmark: 48 training videos,
    2 epochs, the model made tiny by ``model_kwargs``; everything else (model family,
    optimiser, modality, pooling) is the experiment's own."""
    num_frames = max(12, clip_frames + 4)
    config.dataset = synthetic_dataset(num_frames=num_frames, image_size=image_size,
                                       train_videos=48, validation_videos=20, test_videos=20,
                                       num_subjects=20)
    config.input.update(clip_frames=clip_frames, image_size=image_size, num_workers=0)
    config.eval.max_frames = num_frames
    config.model.kwargs.update(model_kwargs)
    config.optimizer.accumulation_steps = 1
    config.train.update(batch_size=batch_size, epochs=2, log_every_steps=2,
                        checkpoint_every_steps=2, early_stopping_patience=0)
    return config


def pattern(field: str, value: str) -> re.Pattern:
    """The regular expression of config field ``field`` (e.g. ``optimizer.trainable``),
    compiled; a one-line UserError when ``value`` is not one."""
    try:
        return re.compile(value)
    except re.error as e:
        raise UserError(f"{field}={value!r} is not a regular expression: {e}") from None


def check_arg(arg: str, allowed: tuple[str, ...]) -> set[str]:
    """Validates the ``path:arg`` part of ``--config``: comma-separated words from
    ``allowed`` (e.g. ``softmax,smoke``); returns them as a set ('' gives the empty set)."""
    words = {w for w in arg.split(",") if w}
    unknown = words - set(allowed)
    if unknown:
        choices = ", ".join(repr(a) for a in allowed if a)
        raise ValueError(f"unknown config argument {sorted(unknown)[0]!r}; use "
                         f"comma-separated words from {choices}")
    return words
