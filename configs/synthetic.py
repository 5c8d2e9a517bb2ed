"""TimeSformer (divided space-time attention) on the built-in synthetic benchmark.

The default experiment and sanity check: needs no download and trains to about 90 % validation
accuracy in under five minutes on a 2-core CPU. To fit that budget it uses 32×32 frames,
moderate nuisances (0.25) and flip-only augmentation: a TimeSformer trained from scratch on
few thousand clips learns the expressions only slowly under random crops/rotations/colour
jitter, which the config keeps available (``input.augment``) for longer runs.

  python -m fer_jax.main --config=configs/synthetic.py --workdir=runs/synthetic
  python -m fer_jax.main --config=configs/synthetic.py:smoke --workdir=/tmp/smoke

Its ``--mode=report`` compares Du Toit's explanation methods (``explain.methods=''``: the
defaults for attention models, ``fer_jax/evaluation/explainers.py``): Grad-CAM, Rollout with his
minimum over heads (Rollout-min), Rollout-Grad (Rollout-Grad-mean) and TIBAV.

Arguments after ``:``: ``smoke`` (a tiny run of a few seconds used by the tests).
Any field can be overridden: ``--config.train.epochs=3 --config.optimizer.learning_rate=1e-3``.
"""
from fer_jax import configs


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("smoke",))
    config = configs.defaults()  # the synthetic benchmark and a small TimeSformer
    if "smoke" in args:
        configs.smoke(config, model_kwargs=dict(hidden_size=32, num_layers=1, num_heads=2))
    return config
