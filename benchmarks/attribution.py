"""Cost of every attribution method relative to one forward+backward, batched vs a per-example
loop, and Grad-CAM against pytorch-grad-cam.

    python benchmarks/attribution.py                       # C3D (width 0.25, 16×64×64), batch 32
    python benchmarks/attribution.py --model timesformer   # adds the attention methods
    python benchmarks/attribution.py --methods grad_cam lrp --batch 8

For each method it prints, on the same batch of ``--batch`` clips in the same process:

* ``batched s`` — one jit-compiled call explaining the whole batch;
* ``/ fwd+bwd`` — that time divided by one jit-compiled forward+backward (gradient of the
  target logits with respect to the input) over the same batch; single-backward methods aim
  for ≤ 1.5× (DeepLIFT: a forward pass of the clip and one of the baseline, one backward);
  integrated gradients, the SmoothGrad family and GradientSHAP run ``--steps`` path points or
  noise samples each;
  Score-CAM and Ablation-CAM one forward pass per channel of the layer and clip
  (``--cam-batch`` copies per pass; Ablation-CAM's run only the layers after the CAM layer);
  the perturbation methods with their defaults one forward pass per window (occlusion: 64
  tiles), group (feature ablation: 64 tubes), mask (RISE: 512) or coalition (KernelSHAP:
  4 × 64) and clip, ``--cam-batch`` copies per pass;
* ``loop s`` and ``speed-up`` — a Python loop calling the same jit-compiled method on one
  clip at a time, and its time over the batched time.

Then (``--model c3d``) it builds the equivalent PyTorch C3D with the same weights (logits
checked against ours), runs pytorch-grad-cam's ``GradCAM`` on its last convolution for the same
batch and targets, and compares its end-to-end time (forward, backward, weights, ReLU,
resize to the clip, min-max scaling) with ours doing the same steps
(``grad_cam`` → ``upsample`` → ``normalise``), and the two maps at the feature resolution.
PyTorch gets every core (``torch.set_num_threads``) as XLA does. Needs, next to ``.[interop]``,
``pip install scikit-learn ttach && pip install --no-deps grad-cam==1.5.7`` (``--no-deps``:
its torchvision requirement would replace the installed torch); pytorch-grad-cam imports torchvision only for image pre-processing
helpers — where torchvision's native library cannot load against the installed torch
(a CPU-only torch with a CUDA torchvision wheel), an empty ``torchvision`` module is put in its
place so the unchanged ``GradCAM`` class can be imported, and the script says so.
"""
from __future__ import annotations

import argparse
import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax import attribution, models
from fer_jax.attribution.core import target_logits
from timing import seconds_per_call

MODELS = {  # name → (model kwargs, clip shape)
    "c3d": (dict(width=0.25, fc_dim=512), (16, 64, 64, 3)),
    "timesformer": (dict(patch_size=16, hidden_size=192, num_layers=4, num_heads=3),
                    (8, 112, 112, 3)),
}
SINGLE_BACKWARD = {"saliency", "input_x_gradient", "deeplift", "grad_cam", "grad_cam_pp", "layer_cam",
                   "hires_cam", "xgrad_cam", "full_grad", "lrp", "lrp_zplus", "lrp_alpha_beta",
                   "lrp_epsilon_plus_flat", "lrp_epsilon_alpha2_beta1",
                   "rollout_grad", "chefer_relevance", "attn_lrp", "attn_lrp_cp"}


def method_table(model_name: str, steps: int, cam_batch: int = 32) -> dict:
    """name → fn(model, variables, x, target) for the methods that apply to ``model_name``;
    ``cam_batch``: the perturbed copies per forward pass of Score-CAM, Ablation-CAM and the
    perturbation methods."""
    m = attribution.METHODS
    table = {
        "saliency": m["saliency"],
        "input_x_gradient": m["input_x_gradient"],
        "integrated_gradients": lambda *a: m["integrated_gradients"](*a, steps=steps,
                                                                     internal_batch_size=1),
        "smoothgrad": lambda *a: m["smoothgrad"](*a, samples=steps, internal_batch_size=1),
        "smoothgrad_sq": lambda *a: m["smoothgrad_sq"](*a, samples=steps, internal_batch_size=1),
        "vargrad": lambda *a: m["vargrad"](*a, samples=steps, internal_batch_size=1),
        "gradient_shap": lambda *a: m["gradient_shap"](*a, samples=steps, stdevs=0.1,
                                                       internal_batch_size=1),
        "grad_cam": m["grad_cam"],
        "grad_cam_pp": m["grad_cam_pp"],
        "layer_cam": m["layer_cam"],
        "eigen_cam": m["eigen_cam"],
        "hires_cam": m["hires_cam"],
        "xgrad_cam": m["xgrad_cam"],
        "eigen_grad_cam": m["eigen_grad_cam"],
        "score_cam": lambda *a: m["score_cam"](*a, batch_size=cam_batch),
        "ablation_cam": lambda *a: m["ablation_cam"](*a, batch_size=cam_batch),
        "occlusion": lambda *a: m["occlusion"](*a, batch_size=cam_batch),
        "feature_ablation": lambda *a: m["feature_ablation"](*a, batch_size=cam_batch),
        "rise": lambda *a: m["rise"](*a, batch_size=cam_batch),
        "kernel_shap": lambda *a: m["kernel_shap"](*a, batch_size=cam_batch),
    }
    if model_name == "timesformer":
        table.update(
            rollout=lambda *a: m["rollout"](*a, head_fusion="min"),
            rollout_grad=m["rollout_grad"],
            chefer_relevance=m["chefer_relevance"],
            attn_lrp=m["attn_lrp"],
            attn_lrp_cp=lambda *a: m["attn_lrp"](*a, attention_rule="cp"))
    else:
        table.update(
            full_grad=m["full_grad"],
            deeplift=m["deeplift"],
            lrp=lambda *a: m["lrp"](*a, rule="epsilon"),
            lrp_zplus=lambda *a: m["lrp"](*a, rule="zplus"),
            lrp_alpha_beta=lambda *a: m["lrp"](*a, rule="alpha_beta"),
            lrp_epsilon_plus_flat=lambda *a: m["lrp"](*a, composite="epsilon_plus_flat"),
            lrp_epsilon_alpha2_beta1=lambda *a: m["lrp"](*a, composite="epsilon_alpha2_beta1"))
    return table


def block(tree):
    return jax.tree.map(lambda a: a.block_until_ready(), tree)


def benchmark_methods(model, variables, x, target, table, repeats: int) -> None:
    """Prints the per-method table (see the module docstring)."""
    def forward_backward(x, t):
        return jax.grad(lambda x: target_logits(model.apply(variables, x), t).sum())(x)

    baseline_fn = jax.jit(forward_backward)
    baseline = seconds_per_call(lambda: block(baseline_fn(x, target)), repeats)
    print(f"one forward+backward over the batch: {baseline:.3f} s")
    print(f"{'method':<22}{'batched s':>11}{'/ fwd+bwd':>11}{'loop s':>10}{'speed-up':>10}")
    for name, method in table.items():
        fn = jax.jit(lambda x, t, method=method: method(model, variables, x, t))
        batched = seconds_per_call(lambda: block(fn(x, target)), repeats)
        single = [(x[i:i + 1], target[i:i + 1]) for i in range(len(x))]
        loop = seconds_per_call(lambda: block([fn(xi, ti) for xi, ti in single]), 1)
        flag = "" if name not in SINGLE_BACKWARD or batched / baseline <= 1.5 else "  (> 1.5×)"
        print(f"{name:<22}{batched:>11.3f}{batched / baseline:>10.2f}×{loop:>10.2f}"
              f"{loop / batched:>9.1f}×{flag}")


def _unavailable_torchvision() -> dict:
    """Module objects for the torchvision names pytorch-grad-cam imports at load time; each
    name raises if it is ever called (the Grad-CAM path never calls them)."""
    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision is not available in this environment")

    names = {"torchvision": (), "torchvision.transforms": ("Compose", "Normalize", "ToTensor"),
             "torchvision.transforms.functional": ("resize",)}
    modules = {}
    for name, attributes in names.items():
        module = types.ModuleType(name)
        module.__path__ = []  # a package, so submodules import
        for attribute in attributes:
            setattr(module, attribute, unavailable)
        modules[name] = module
    modules["torchvision"].transforms = modules["torchvision.transforms"]
    modules["torchvision.transforms"].functional = modules["torchvision.transforms.functional"]
    return modules


def import_pytorch_grad_cam():
    """``pytorch_grad_cam.GradCAM``, or None with the reason printed."""
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError) as e:
        print(f"torchvision cannot load ({str(e).splitlines()[0][:70]}); an empty module "
              "stands in for it in pytorch-grad-cam's pre-processing imports")
        for key in [k for k in sys.modules if k.startswith("torchvision")]:
            del sys.modules[key]
        sys.modules.update(_unavailable_torchvision())
    try:
        from pytorch_grad_cam import GradCAM
    except ImportError as e:
        print(f"pytorch-grad-cam comparison skipped: {e} (pip install grad-cam)")
        return None
    return GradCAM


def torch_c3d(model, variables):
    """PyTorch C3D with the layers and weights of our ``c3d`` ``model`` (clip mode)."""
    import torch
    from torch import nn

    params = variables["params"]

    class ConvReLU(nn.Module):  # our ConvUnit: its output (after ReLU) is the CAM layer
        def __init__(self, name):
            super().__init__()
            kernel = np.asarray(params[name]["conv"]["kernel"])  # [3, 3, 3, in, out]
            self.conv = nn.Conv3d(kernel.shape[3], kernel.shape[4], 3, padding=1)
            self.conv.weight.data = torch.from_numpy(kernel.transpose(4, 3, 0, 1, 2).copy())
            self.conv.bias.data = torch.from_numpy(np.array(params[name]["conv"]["bias"]))

        def forward(self, x):
            return torch.relu(self.conv(x))

    class C3D(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleDict({name: ConvReLU(name) for stage in models.cnn3d.C3D_CONVS
                                        for name in stage})
            self.fcs = nn.ModuleList()
            for name in ("fc6", "fc7", "fc8"):
                kernel = np.asarray(params[name]["kernel"])
                fc = nn.Linear(*kernel.shape)
                fc.weight.data = torch.from_numpy(kernel.T.copy())
                fc.bias.data = torch.from_numpy(np.array(params[name]["bias"]))
                self.fcs.append(fc)

        def forward(self, x):  # x [B, C, T, H, W]
            for stage, names in enumerate(models.cnn3d.C3D_CONVS):
                for name in names:
                    x = self.convs[name](x)
                time = 1 if stage == 0 else 2
                padding = (0, 1, 1) if stage == 4 else 0
                x = nn.functional.max_pool3d(x, (time, 2, 2), (time, 2, 2), padding)
            x = x.flatten(1)
            x = torch.relu(self.fcs[0](x))
            x = torch.relu(self.fcs[1](x))
            return self.fcs[2](x)

    return C3D().eval()


def compare_pytorch_grad_cam(model, variables, x, target, repeats: int) -> None:
    """Prints our Grad-CAM pipeline against pytorch-grad-cam on the equivalent PyTorch C3D."""
    grad_cam_class = import_pytorch_grad_cam()
    if grad_cam_class is None:
        return
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.set_num_threads(os.cpu_count())
    reference = torch_c3d(model, variables)
    clips = torch.from_numpy(np.asarray(x).transpose(0, 4, 1, 2, 3).copy())
    with torch.no_grad():
        gap = np.abs(reference(clips).numpy() - np.asarray(model.apply(variables, x))).max()
    print(f"\nPyTorch C3D with the same weights: max |logit difference| {gap:.2e}")

    targets = [ClassifierOutputTarget(int(t)) for t in target]
    cam = grad_cam_class(model=reference, target_layers=[reference.convs["conv5b"]])
    theirs = seconds_per_call(lambda: cam(input_tensor=clips, targets=targets), repeats)

    def ours_pipeline(x, t):
        maps = attribution.grad_cam(model, variables, x, t, layer="conv5b")
        return attribution.normalise(attribution.upsample(maps, x.shape[1:4]))

    ours_fn = jax.jit(ours_pipeline)
    ours = seconds_per_call(lambda: block(ours_fn(x, target)), repeats)
    print(f"Grad-CAM end to end on {len(x)} clips (to clip resolution, min-max scaled): "
          f"pytorch-grad-cam {theirs:.3f} s, fer_jax {ours:.3f} s → {theirs / ours:.1f}× faster")

    activations = cam.activations_and_grads.activations[0].numpy()
    grads = cam.activations_and_grads.gradients[0].numpy()
    their_raw = np.maximum(cam.get_cam_image(clips, None, targets, activations, grads), 0)
    our_raw = np.asarray(jax.jit(lambda x, t: attribution.grad_cam(
        model, variables, x, t, layer="conv5b"))(x, target))  # [B, T', H', W']
    scale = np.abs(their_raw).max()
    print(f"maps at the conv5b resolution {our_raw.shape[1:]}: max |difference| "
          f"{np.abs(our_raw - their_raw).max() / scale:.1e} of the largest value")
    cam.activations_and_grads.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=list(MODELS), default="c3d")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after a warm-up")
    parser.add_argument("--steps", type=int, default=8,
                        help="integrated-gradients nodes / SmoothGrad samples")
    parser.add_argument("--methods", nargs="+", help="subset of the methods to time")
    parser.add_argument("--num-classes", type=int, default=7)
    parser.add_argument("--cam-batch", type=int, default=32,
                        help="perturbed copies per forward pass (Score-CAM, Ablation-CAM, "
                        "occlusion, feature ablation, RISE, KernelSHAP)")
    args = parser.parse_args()

    kwargs, shape = MODELS[args.model]
    model = models.build(args.model, num_classes=args.num_classes, **kwargs)
    x = jax.random.uniform(jax.random.PRNGKey(0), (args.batch, *shape), jnp.float32)
    variables = jax.jit(model.init)(jax.random.PRNGKey(1), x[:1])
    target = jnp.arange(args.batch, dtype=jnp.int32) % args.num_classes
    table = method_table(args.model, args.steps, args.cam_batch)
    if args.methods:
        unknown = set(args.methods) - set(table)
        if unknown:
            parser.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(table)}")
        table = {name: table[name] for name in args.methods}
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} cores); "
          f"{args.model} {kwargs}, batch {args.batch} × {'×'.join(map(str, shape))}, "
          f"{args.repeats} timed calls")
    benchmark_methods(model, variables, x, target, table, args.repeats)
    if args.model == "c3d":
        compare_pytorch_grad_cam(model, variables, x, target, args.repeats)


if __name__ == "__main__":
    main()
