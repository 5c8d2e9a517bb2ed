"""Ayral's thesis, chapter 4: attention modules for 3D CNNs (Tables 4.1–4.6).

One config per row: ``thesis_attention.py:ROW`` with ROW one of the names below (default
``baseline``), inserted between the feature extractor and the classifier of the inflated VGG-16
on AFEW (chapter 3's settings, ``configs.thesis_chapter3``). ``models/attention.py`` holds the
modules; each starts as the identity, so the pretrained network is unchanged at step 0.

  Table 4.1 mask attention, Eq. 4.10 (AFEW, baseline 45.73 %):
    temporal_mask 45.64, spatial_mask 45.82, mask3d 45.94, concat_mask 45.53,
    additive_mask 45.39, mult_mask 46.22 (context-guided, multiplicative: the best mask)
  Table 4.2 spatial transformer networks: spatial_stn 45.71, temporal_stn 44.82, stn3d 45.33
  Table 4.3 heads × dimension of temporal self-attention (h = 4, d = 64 recommended, 46.61):
    temporal_sa with --config.model.attention.kwargs.num_heads / head_dim
  Table 4.4 all types: spatial_sa 45.95, temporal_sa 46.61, sa3d 45.53 and the rows above
  Table 4.5 HMDB-51 with I3D: add ``hmdb51`` (baseline 66.81, temporal_mask 66.92,
    temporal_sa 67.25)
  Table 4.6 video-level temporal self-attention, two-step: ``video_level,range128`` (ranges
    64 / 128 / 256: 46.53 / 47.14 / 47.39 vs 46.61 with 16-frame clips) — the network of a
    trained ``temporal_sa`` run is frozen (``--config.model.init_from=ITS_WORKDIR``) and only
    the attention and the head train, on 64–256-frame clips.

Stated: modules after the pretrained feature extractor; mask = two 1×1×1 layers with tanh
(Eq. 4.10); context vector from linear + ReLU + pooling; self-attention multi-head, residual,
no positional encoding, over the per-frame fc7 features (temporal), per frame (spatial) or
over all positions (3D); STN localisation network of three layers with tanh, identity init.
Chosen (not stated): mask hidden size 64, context size 64, self-attention h = 4, d = 64 for
the spatial and 3D variants too, STN hidden size 32 on a 4×4×4 pooled input; for the
two-step variant batch 2 and the full video-level range at training time.

``synthetic`` runs a row on the synthetic benchmark at CPU scale (``configs.thesis_synthetic``:
a dense 3D ResNet-18 of width 1/8 whose attention reads its last feature maps);
``smoke`` shrinks any row to seconds (tests).

  python -m fer_jax.main --config=configs/thesis_attention.py:mult_mask --workdir=runs/mult_mask
  python launch/sweep.py --config=configs/thesis_attention.py:baseline,synthetic \\
      --config=configs/thesis_attention.py:mult_mask,synthetic \\
      --config=configs/thesis_attention.py:temporal_sa,synthetic \\
      --config=configs/thesis_length.py:resize,synthetic \\
      --workdir=runs/thesis_ch2_ch4 --seeds=0,1,2 --parallel=2 --eval
"""
from fer_jax import configs

_SA = dict(num_heads=4, head_dim=64)
ROWS = {  # row → (module, kwargs) of models/attention.py
    "baseline": ("", {}),
    "temporal_mask": ("mask", dict(kind="temporal", hidden=64)),
    "spatial_mask": ("mask", dict(kind="spatial", hidden=64)),
    "mask3d": ("mask", dict(kind="3d", hidden=64)),
    "concat_mask": ("mask", dict(kind="3d", hidden=64, context="concat", context_dim=64)),
    "additive_mask": ("mask", dict(kind="3d", hidden=64, context="additive", context_dim=64)),
    "mult_mask": ("mask", dict(kind="3d", hidden=64, context="multiplicative",
                               context_dim=64)),
    "spatial_sa": ("self_attention", dict(kind="spatial", **_SA)),
    "temporal_sa": ("self_attention", dict(kind="temporal", **_SA)),
    "sa3d": ("self_attention", dict(kind="3d", **_SA)),
    "spatial_stn": ("stn", dict(kind="spatial", hidden=32)),
    "temporal_stn": ("stn", dict(kind="temporal", hidden=32)),
    "stn3d": ("stn", dict(kind="3d", hidden=32)),
}
RANGES = {"range64": 64, "range128": 128, "range256": 256}
SYNTHETIC_SIZES = dict(hidden=16, context_dim=16, head_dim=16)  # for 64-channel features


def get_config(arg: str = ""):
    args = configs.check_arg(arg, tuple(ROWS) + tuple(RANGES) +
                             ("hmdb51", "video_level", "synthetic", "smoke"))
    rows = [a for a in args if a in ROWS] or ["baseline"]
    if len(rows) > 1:
        raise ValueError(f"choose one row, got {', '.join(sorted(rows))}")
    config = configs.defaults()
    if "hmdb51" in args:  # Table 4.5: I3D on HMDB-51, the chapter-3 settings
        configs.hmdb51_i3d(config)
    else:  # AFEW, inflated VGG-16 (configs/vgg16_3d_afew.py)
        configs.afew_vgg16(config)
    name, kwargs = ROWS[rows[0]]
    if "synthetic" in args:
        configs.thesis_synthetic(config)
        kwargs = {k: SYNTHETIC_SIZES.get(k, v) for k, v in kwargs.items()}
    config.model.attention = dict(name=name, kwargs=kwargs)
    if "video_level" in args:
        if rows[0] != "temporal_sa":
            raise ValueError("video_level is the two-step variant of temporal_sa")
        frames = [RANGES[a] for a in args if a in RANGES] or [128]
        config.model.kwargs.update(freeze_features=True)
        config.optimizer.trainable = "^(attention|head|fc|conv3d_0c_1x1)/"
        config.input.update(clip_frames=frames[0])
        config.eval.max_frames = max(config.eval.max_frames, frames[0])
        config.train.batch_size = 2
    if "smoke" in args:
        configs.smoke(config, model_kwargs=dict(width=1 / 16, fc_dim=32, head_dim=8)
                      if config.model.name == "vgg16_3d" else dict(width=1 / 8),
                      clip_frames=8 if "video_level" in args else 4)
        config.model.attention.kwargs = {k: SYNTHETIC_SIZES[k] // 2 if k in SYNTHETIC_SIZES
                                         else v for k, v in kwargs.items()}
    return config
