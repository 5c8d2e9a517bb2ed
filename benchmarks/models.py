"""Training-step throughput of the model zoo, and TimeSformer against HF's PyTorch TimeSformer.

    python benchmarks/models.py                          # every model + the TimeSformer ratio
    python benchmarks/models.py --models timesformer --timesformer small --batch 4
    python benchmarks/models.py --models none --timesformer base --batch 2 --steps 3
    python benchmarks/models.py --models none --timesformer small zoo --rounds 3

For every model of the zoo (at the benchmark size listed in ``ZOO``) it prints the time of a
jit-compiled training step (forward, backward, AdamW update, donated buffers) in clips/s.

For TimeSformer it then builds HF transformers' ``TimesformerForVideoClassification`` with the
same configuration (``--timesformer`` preset), runs the same batch on the same machine in the
same process, and prints three phases for both — inference forward, forward + backward, full
training step — with the ratio ours / PyTorch, so the table shows where the time goes. Both
use float32 and every core (``torch.set_num_threads(os.cpu_count())``; XLA's CPU backend
uses all cores by default). Needs ``pip install -e '.[interop]'`` for the PyTorch side.

With ``--rounds R`` the two frameworks are timed in R interleaved rounds (each phase: ours,
then PyTorch, then the next phase), so that other jobs on the machine disturb both sides alike;
the table shows the median seconds of each side over the rounds and the ratio of the medians,
and a last line the range of the per-round training-step ratios.
"""
from __future__ import annotations

import argparse
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fer_jax import models
from fer_jax.train import apply_model
from timing import cpu_name, seconds_per_call

# name → (model kwargs, input shape without batch): sizes chosen so a step takes well under a
# second on a laptop CPU while keeping each architecture's structure (depth, strides).
ZOO = {
    "timesformer": (dict(patch_size=16, hidden_size=192, num_layers=4, num_heads=3),
                    (8, 112, 112, 3)),
    "vgg16_3d": (dict(width=0.25), (8, 32, 32, 3)),
    "c3d": (dict(width=0.25), (16, 64, 64, 3)),
    "i3d": (dict(width=0.25), (16, 64, 64, 3)),
    "resnet3d_18": (dict(), (16, 64, 64, 3)),
    "resnext3d_101": (dict(width=0.25), (16, 64, 64, 3)),
    "tcn": (dict(), (20, 68, 2)),
    "scn": (dict(), (20, 112, 112, 1)),
    "early_fusion_cnn": (dict(), (16, 100, 100, 1)),
}

TIMESFORMER_PRESETS = {  # HF config fields; 'base' is Du Toit's model (ViT-B/16, 8×224)
    "small": dict(image_size=112, patch_size=16, num_frames=8, hidden_size=384,
                  num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "base": dict(image_size=224, patch_size=16, num_frames=8, hidden_size=768,
                 num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    # the zoo's benchmark size (ZOO['timesformer'] above)
    "zoo": dict(image_size=112, patch_size=16, num_frames=8, hidden_size=192,
                num_hidden_layers=4, num_attention_heads=3, intermediate_size=768),
}
PHASES = ("forward", "forward+backward", "train step")


def jax_phases(model, x: np.ndarray, num_classes: int, steps: int, phases=PHASES,
               count_flops: bool = False) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per batch of each phase for a Flax model, and (with ``count_flops``) the
    FLOPs of each phase according to XLA's cost analysis."""
    fns, flops = jax_phase_fns(model, x, num_classes, phases, count_flops)
    return {name: seconds_per_call(fns[name], steps) for name in phases}, flops


def jax_phase_fns(model, x: np.ndarray, num_classes: int, phases=PHASES,
                  count_flops: bool = False) -> tuple[dict, dict[str, float]]:
    """A blocking callable per phase for a Flax model (compiled on first call), and (with
    ``count_flops``) the FLOPs of each phase according to XLA's cost analysis."""
    x = jnp.asarray(x)
    labels = jnp.arange(len(x)) % num_classes
    variables = dict(model.init(jax.random.PRNGKey(0), x, train=False))
    params = variables.pop("params")
    model_state = {k: v for k, v in variables.items() if k != "intermediates"}
    tx = optax.adamw(1e-4)
    opt_state = tx.init(params)

    def loss_fn(p, s):
        logits, s = apply_model(model, p, s, x, train=True, rng=jax.random.PRNGKey(1))
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), s

    forward = jax.jit(lambda p, s: apply_model(model, p, s, x, train=False)[0])
    grad = jax.jit(jax.grad(loss_fn, has_aux=True))

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
    def step(p, s, o):
        g, s = jax.grad(loss_fn, has_aux=True)(p, s)
        updates, o = tx.update(g, o, p)
        return optax.apply_updates(p, updates), s, o

    state = [params, model_state, opt_state]

    def run_step():
        state[:] = step(*state)
        jax.block_until_ready(state[0])

    fns = {"forward": lambda: forward(state[0], state[1]).block_until_ready(),
           "forward+backward": lambda: jax.block_until_ready(grad(state[0], state[1])),
           "train step": run_step}
    if not count_flops:
        return {name: fns[name] for name in phases}, {}
    calls = {"forward": (forward, state[:2]), "forward+backward": (grad, state[:2]),
             "train step": (step, state)}
    return ({name: fns[name] for name in phases},
            {name: _flops(*calls[name]) for name in phases})


def _flops(jitted, args) -> float:
    """FLOPs of one call of ``jitted`` on ``args`` per XLA's cost analysis (0 if unknown)."""
    cost = jitted.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float((cost or {}).get("flops", 0.0))


def torch_phase_fns(hf_config: dict, x: np.ndarray) -> dict:
    """A blocking callable per phase for HF's PyTorch TimeSformer (eager, float32, all CPU
    threads)."""
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    config = transformers.TimesformerConfig(**hf_config)
    model = transformers.TimesformerForVideoClassification(config)
    pixels = torch.from_numpy(x).permute(0, 1, 4, 2, 3).contiguous()  # [B, T, C, H, W]
    labels = torch.arange(len(x)) % config.num_labels
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def forward():
        model.eval()
        with torch.no_grad():
            model(pixels)

    def forward_backward():
        model.train()
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(pixels).logits, labels).backward()

    def train_step():
        forward_backward()
        optimizer.step()

    return {"forward": forward, "forward+backward": forward_backward, "train step": train_step}


def _timesformer_kwargs(hf: dict) -> dict:
    return dict(patch_size=hf["patch_size"], hidden_size=hf["hidden_size"],
                num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
                mlp_ratio=hf["intermediate_size"] / hf["hidden_size"])


def compare_timesformer(preset: str, batch: int, steps: int, num_classes: int,
                        rounds: int = 1) -> dict[str, list[float]]:
    """Prints the table of ours against PyTorch for ``preset``; returns the per-round ratios
    (ours / PyTorch, clips/s) of each phase."""
    hf = dict(TIMESFORMER_PRESETS[preset], num_labels=num_classes)
    shape = (batch, hf["num_frames"], hf["image_size"], hf["image_size"], 3)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    model = models.build("timesformer", num_classes=num_classes, **_timesformer_kwargs(hf))
    ours_fns, flops = jax_phase_fns(model, x, num_classes, count_flops=True)
    theirs_fns = torch_phase_fns(hf, x)
    ours = {phase: [] for phase in PHASES}
    theirs = {phase: [] for phase in PHASES}
    for _ in range(rounds):  # interleaved, so that other load hits both sides alike
        for phase in PHASES:
            ours[phase].append(seconds_per_call(ours_fns[phase], steps))
            theirs[phase].append(seconds_per_call(theirs_fns[phase], steps))
    ratios = {phase: [b / a for a, b in zip(ours[phase], theirs[phase])] for phase in PHASES}
    print(f"\nTimeSformer '{preset}' ({hf['hidden_size']} wide, {hf['num_hidden_layers']} "
          f"layers, {hf['num_frames']}x{hf['image_size']}), batch {batch}, float32, "
          f"{os.cpu_count()} CPU threads, {cpu_name()}"
          + (f", median of {rounds} interleaved rounds:" if rounds > 1 else ":"))
    print(f"{'phase':<18}{'fer_jax clips/s':>17}{'PyTorch clips/s':>17}{'ratio':>8}"
          f"{'GFLOP/step':>12}{'fer_jax GFLOP/s':>17}{'PyTorch GFLOP/s':>17}")
    for phase in PHASES:
        a, b = np.median(ours[phase]), np.median(theirs[phase])
        giga = flops[phase] / 1e9  # the same computation in both frameworks
        print(f"{phase:<18}{batch / a:>17.2f}{batch / b:>17.2f}{b / a:>7.2f}x{giga:>12.1f}"
              f"{giga / a:>17.1f}{giga / b:>17.1f}")
    if rounds > 1:
        for phase in PHASES:
            print(f"  {phase} ratio per round: "
                  + ", ".join(f"{r:.2f}x" for r in ratios[phase]))
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["all"],
                        help="model names, 'all' or 'none' (default: all)")
    parser.add_argument("--timesformer", nargs="+", choices=[*TIMESFORMER_PRESETS, "none"],
                        default=["small"], help="preset(s) for the PyTorch comparison")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps after a warm-up")
    parser.add_argument("--rounds", type=int, default=1,
                        help="interleaved rounds of the PyTorch comparison (median reported)")
    parser.add_argument("--num-classes", type=int, default=7)
    args = parser.parse_args()
    names = list(ZOO) if args.models == ["all"] else [m for m in args.models if m != "none"]
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} cores), "
          f"batch {args.batch}, {args.steps} timed steps")
    if names:
        print(f"{'model':<18}{'input':>20}{'params':>14}{'train clips/s':>16}")
    for name in names:
        kwargs, shape = ZOO[name]
        model = models.build(name, num_classes=args.num_classes, **kwargs)
        x = np.random.default_rng(0).standard_normal((args.batch, *shape)).astype(np.float32)
        params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
        count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
        seconds, _ = jax_phases(model, x, args.num_classes, args.steps, ("train step",))
        print(f"{name:<18}{'x'.join(map(str, shape)):>20}{count:>14,}"
              f"{args.batch / seconds['train step']:>16.2f}", flush=True)
    for preset in args.timesformer:
        if preset != "none":
            compare_timesformer(preset, args.batch, args.steps, args.num_classes, args.rounds)


if __name__ == "__main__":
    main()
