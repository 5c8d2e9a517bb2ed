"""Temporal stochastic softmax vs uniform clip sampling (Ayral's thesis, chapter 3) on the
synthetic benchmark, whose per-frame ground truth tells where the expression is.

Videos of 32 frames hold one expression event (onset 2–4, apex 4–8, offset 2–4 frames) at a
random time, plus nuisance segments (occluders, brightness drops, a distractor expression); a
training clip is F = 8 consecutive frames, so a uniformly drawn clip (Eq. 3.7) often misses
the event. The model is a dense 3D ResNet-18 (width 1/8, no temporal stride) whose per-frame
scores are max-pooled over the clip (the thesis' stage 1); it is small so that the whole
comparison (2 samplers × 3 seeds) runs on a 2-core CPU in well under an hour. At test time
every frame of every video is scored, clip max-pooling with kernel F, then softmax pooling
over the clips with γ_p = 1 — the same for both samplers, so only the training clip selection
differs.

  python launch/sweep.py --config=configs/sampler_synthetic.py --workdir=runs/sampler \\
      --seeds=0,1,2 --set=sampler.name=uniform,stochastic_softmax --eval

Stochastic softmax: γ_s = 1, 2 warm-up epochs, 3 exploration epochs (shortened from the
thesis' 3 and 5 to leave 7 of the 12 epochs to exploitation), Eq. 3.9 radius F.
``:smoke`` is a tiny run of seconds (used by the tests): 24 training videos, 3 steps per
epoch, 16-pixel model input, one residual block per stage.

The thesis' claim is made for pretrained 3D CNNs fine-tuned on long videos; ``:pretrain``
and ``:long`` test it in that setting (combinable with ``:smoke``):

* ``:pretrain`` trains the network once on short videos (16 frames, the clip length F) whose
  event (onset 1–2, apex 8–12, offset 1–2 frames) fills most of the clip, so every clip sees
  the expression and no sampler is needed (the plain random clip, here the whole video); 200
  identities drawn with ``dataset.seed=1``, none of them a face of ``:long``'s videos, 1,600
  training videos, 8 epochs (800 steps).
* ``:long`` fine-tunes that network on long videos: 80 frames with one event (onset 2–4,
  apex 8–16, offset 2–4 frames) at a random time, F = 16-frame training clips, 320 training
  videos of 100 identities, 1,000 test videos (the paired differences need them), 6 epochs.
  It keeps the pretrained 7-class classifier ``fc`` and trains it with AdamW at 2e-3, the
  pretrained layers at 1/200 of that rate (``optimizer.scaled``, as Ayral's reference code
  fine-tunes pretrained layers). Stochastic softmax needs no warm-up here, the pretrained
  classifier scores clips from the first epoch: 3 exploration epochs (starts 0, 32 and 64),
  then 3 of exploitation. The arm is chosen by ``--set=sampler.name=…``; every arm starts
  from the same pretraining run (``model.init_from``), so the paired differences of
  ``--reference`` compare samplers only:

  python -m fer_jax.main --config=configs/sampler_synthetic.py:pretrain \\
      --workdir=runs/sampler_pretrain
  python launch/sweep.py --config=configs/sampler_synthetic.py:long \\
      --workdir=runs/sampler_long --seeds=0,1,2,3,4,5,6,7 \\
      --set=sampler.name=uniform,stochastic_softmax,reinforce --eval --parallel=2 \\
      --extra=--config.model.init_from=runs/sampler_pretrain \\
      --reference=sampler.name=uniform
"""
from fer_jax import configs

# The classifier of resnet3d_18: every other parameter is a pretrained layer (:long).
PRETRAINED_LAYERS = "^(?!fc/)"


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("smoke", "pretrain", "long"))
    if {"pretrain", "long"} <= args:
        raise ValueError("config arguments 'pretrain' and 'long' are two runs; choose one")
    config = configs.defaults()
    config.dataset.update(num_frames=32, train_videos=600, validation_videos=140,
                          test_videos=140)
    config.input.update(clip_frames=8, train_clip="random", image_size=32)
    config.model.update(name="resnet3d_18", temporal_pooling="max")
    config.model.kwargs = dict(width=1 / 8, dense=True)
    config.optimizer.update(name="adamw", learning_rate=2e-3, weight_decay=1e-4)
    config.schedule.update(name="cosine", warmup_epochs=0.5)
    config.train.update(batch_size=16, epochs=12, checkpoint_every_steps=0)
    config.eval.update(full_video=True, max_frames=32, pooling_gamma=1.0)
    config.sampler.update(name="stochastic_softmax", gamma=1.0, warmup_epochs=2,
                          exploration_epochs=3, radius=0, map_videos=8)
    if "pretrain" in args:
        config.dataset.update(num_frames=16, onset_frames=(1, 2), apex_frames=(8, 12),
                              offset_frames=(1, 2), num_subjects=200, seed=1,
                              train_videos=1600, validation_videos=160, test_videos=160)
        config.input.clip_frames = 16
        config.sampler.name = ""  # input.train_clip: a random clip, here the whole video
        config.train.epochs = 8
        config.eval.max_frames = 16
    if "long" in args:
        config.dataset.update(num_frames=80, onset_frames=(2, 4), apex_frames=(8, 16),
                              offset_frames=(2, 4), num_subjects=100, train_videos=320,
                              validation_videos=60, test_videos=1000)
        config.input.clip_frames = 16
        config.optimizer.update(scaled=PRETRAINED_LAYERS, scale=1 / 200)
        config.train.epochs = 6
        config.eval.max_frames = 80
        config.sampler.update(warmup_epochs=0, exploration_epochs=3)
    if "smoke" in args:
        long_videos = "long" in args
        # one block per stage (a ResNet-10): the full model's path, a run's CPU 15 s → 11 s
        configs.smoke(config, model_kwargs=dict(width=1 / 16, stage_sizes=(1, 1, 1, 1)),
                      clip_frames=4)
        config.dataset.update(num_frames=24 if long_videos else 12, train_videos=24)
        config.input.image_size = 16  # frames drawn at 32 px, warped to 16: a quarter of the work
        config.eval.max_frames = config.dataset.num_frames
        config.sampler.update(warmup_epochs=1, exploration_epochs=1, map_videos=2)
        config.train.epochs = 3
    return config
