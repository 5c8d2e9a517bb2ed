"""Temporal stochastic softmax vs uniform clip sampling (Ayral's thesis, chapter 3) on the
synthetic benchmark, whose per-frame ground truth tells where the expression is.

Videos of 32 frames hold one expression event (onset 2–4, apex 4–8, offset 2–4 frames) at a
random time, plus nuisance segments (occluders, brightness drops, a distractor expression); a
training clip is F = 8 consecutive frames, so a uniformly drawn clip (Eq. 3.7) often misses
the event. The model is a dense 3D ResNet-18 (width 1/8, no temporal stride) whose per-frame
scores are max-pooled over the clip (the thesis' stage 1); it is small so that the whole
comparison (2 samplers × 3 seeds) runs on a 2-core CPU in well under an hour. At test time every frame of every video is scored, clip
max-pooling with kernel F, then softmax pooling over the clips with γ_p = 1 — the same for
both samplers, so only the training clip selection differs.

  python launch/sweep.py --config=configs/sampler_synthetic.py --workdir=runs/sampler \\
      --seeds=0,1,2 --set=sampler.name=uniform,stochastic_softmax --eval

Stochastic softmax: γ_s = 1, 2 warm-up epochs, 3 exploration epochs (shortened from the
thesis' 3 and 5 to leave 7 of the 12 epochs to exploitation), Eq. 3.9 radius F.
``:smoke`` is a tiny run of seconds (used by the tests): 24 training videos, 3 steps per
epoch, 16-pixel model input.
"""
from fer_jax import configs


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("smoke",))
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
    if "smoke" in args:
        configs.smoke(config, model_kwargs=dict(width=1 / 16), clip_frames=4)
        config.dataset.update(num_frames=12, train_videos=24)
        config.input.image_size = 16  # frames drawn at 32 px, warped to 16: a quarter of the work
        config.eval.max_frames = 12
        config.sampler.update(warmup_epochs=1, exploration_epochs=1, map_videos=2)
        config.train.epochs = 3
    return config
