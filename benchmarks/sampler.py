"""Host cost and memory of the score-table clip samplers (fer_jax.sampling).

    python benchmarks/sampler.py
    python benchmarks/sampler.py --videos 100000 --calls 5000

Prints (a) µs per ``sample`` + ``update`` of the stochastic softmax sampler in its
exploitation phase at N = 500 clip positions (median over ``--calls`` calls; target 20 µs),
(b) table bytes per clip position at a mean N of 100, (c) for a table of ``--videos`` videos
with N uniform in [1, 199]: seconds to build it, to draw one clip for every video
(``sample_many``), to update every video (``update_batch`` in batches of ``--batch``), to
``state_dict()``, to save that as an Orbax checkpoint item (as the training loop does) and
to restore it, and the peak RSS.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp

from fer_jax.sampling import ScoreTable, StochasticSoftmaxSampler


def _median_us(fn, calls: int) -> float:
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        fn(i)
        times[i] = time.perf_counter() - start
    return float(np.median(times)) * 1e6


def _seconds(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()
    rows = []

    # (a) per-call host cost at N = 500, exploitation phase.
    table = ScoreTable([500], init=np.random.default_rng(0).normal(size=500))
    sampler = StochasticSoftmaxSampler(table, gamma=1.0, warmup_epochs=3, exploration_epochs=5)
    first = 8
    assert sampler.phase(first) == "exploitation"
    sample = _median_us(lambda i: sampler.sample(0, first + i), args.calls)
    update = _median_us(lambda i: sampler.update(0, 250, 0.5, first), args.calls)
    both = _median_us(lambda i: sampler.update(0, sampler.sample(0, first + i), 0.5,
                                               first + i), args.calls)
    warmup = _median_us(lambda i: sampler.sample(0, 0), args.calls)
    rows += [("sample, exploitation, N=500", f"{sample:.1f} µs"),
             ("update (Eq. 3.9, R=16), N=500", f"{update:.1f} µs"),
             ("sample + update, N=500", f"{both:.1f} µs (target ≤ 20 µs)"),
             ("sample, warm-up", f"{warmup:.1f} µs")]
    table.close()

    # (b) + (c) a large ragged table.
    counts = np.random.default_rng(1).integers(1, 200, args.videos)
    build, table = _seconds(lambda: ScoreTable(counts))
    table.flat[:] = np.random.default_rng(2).normal(size=table.flat.size).astype(np.float32)
    rows.append(("table bytes per clip position", f"{table.nbytes / counts.sum():.3f} "
                 f"(mean N = {counts.mean():.1f})"))
    sampler = StochasticSoftmaxSampler(table, gamma=1.0, radius=16)
    videos = np.arange(args.videos)
    draw, starts = _seconds(lambda: sampler.sample_many(videos, first))
    scores = np.random.default_rng(3).normal(size=args.videos)

    def update_all():
        for b in range(0, args.videos, args.batch):
            sampler.update_batch(videos[b:b + args.batch], starts[b:b + args.batch],
                                 scores[b:b + args.batch], first)

    updates, _ = _seconds(update_all)
    state_time, state = _seconds(sampler.state_dict)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "sampler"  # an Orbax item, as in the training checkpoints
        checkpointer = ocp.StandardCheckpointer()

        def save():
            checkpointer.save(path, state)
            checkpointer.wait_until_finished()

        save_time, _ = _seconds(save)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        load_time, loaded = _seconds(lambda: checkpointer.restore(path, state))
    assert np.array_equal(np.asarray(loaded["scores"]), state["scores"])
    millions = f"{args.videos / 1e6:g}M videos, {counts.sum() / 1e6:.1f}M positions"
    rows += [(f"build table ({millions})", f"{build:.2f} s ({table.nbytes / 2**20:.0f} MiB "
              f"in {Path(table.path).parent})"),
             ("draw one clip per video (sample_many)", f"{draw:.2f} s"),
             (f"update every video (update_batch, B={args.batch})", f"{updates:.2f} s"),
             ("state_dict()", f"{state_time:.2f} s"),
             ("Orbax checkpoint save", f"{save_time:.2f} s ({size / 2**20:.0f} MiB)"),
             ("Orbax checkpoint restore", f"{load_time:.2f} s"),
             ("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} "
              f"MiB")]
    table.close()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
