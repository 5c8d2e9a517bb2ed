"""Temporal stochastic softmax clip sampling (Ayral's thesis, chapter 3), host-side NumPy.

>>> table = ScoreTable(np.maximum(num_frames - clip_length + 1, 1))  # N_v per video
>>> sampler = make_sampler("stochastic_softmax", table, gamma=1.0, radius=clip_length)
>>> start = sampler.sample(video, epoch)            # readers: after wait_published(epoch)
>>> sampler.update(video, start, true_class_logit, epoch)        # owner
>>> table.publish(epoch + 1)                        # owner, after the epoch's last update

``softmax_pool`` (Eq. 3.3, test-time pooling over clips) is ``fer_jax.models.pooling``'s,
imported on first use so that worker processes unpickling a sampler do not import JAX.
"""
from fer_jax.sampling.samplers import (ReinforceSampler, StochasticSoftmaxSampler,
                                       UniformSampler, make_sampler)
from fer_jax.sampling.table import ScoreTable

__all__ = ["ScoreTable", "UniformSampler", "StochasticSoftmaxSampler", "ReinforceSampler",
           "make_sampler", "softmax_pool"]


def __getattr__(name: str):
    if name == "softmax_pool":
        from fer_jax.models.pooling import softmax_pool
        return softmax_pool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
