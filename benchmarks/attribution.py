"""Cost of every attribution method relative to one forward+backward, batched vs a per-example
loop, and against its reference library (pytorch-grad-cam, Captum, Zennit).

    python benchmarks/attribution.py                       # C3D (width 0.25, 16×64×64), batch 32
    python benchmarks/attribution.py --model timesformer   # adds the attention methods
    python benchmarks/attribution.py --methods grad_cam lrp --batch 8
    python benchmarks/attribution.py --batch 2 --repeats 1 --no-cost --json refs.json

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

Then (``--model c3d``; ``--no-reference`` leaves it out, ``--no-cost`` the table above) it
builds the equivalent PyTorch C3D with the same weights (logits checked against ours) and
times every method that a reference library has against it, on the same clips and targets,
each side set up as the parity tests set up both (``reference_pairs``):

* pytorch-grad-cam 1.5.7 on ``conv5b``: GradCAM, HiResCAM, XGradCAM, EigenGradCAM,
  GradCAMPlusPlus, LayerCAM, EigenCAM, timed end to end (forward, backward, weights, ReLU,
  resize to the clip, min-max scaling) against ours doing the same steps (method →
  ``upsample`` → ``normalise``); compared at the layer's resolution, where the two compute the
  same maps (its resize is SciPy's cubic-spline ``zoom``, ours linear). Its ScoreCAM,
  AblationCAM and FullGrad take 4-D (image) activations only: one line says why instead of a
  row.
* Captum 0.9: Saliency, InputXGradient, IntegratedGradients (Gauss–Legendre nodes, as ours,
  one node of the batch per pass), NoiseTunnel(Saliency) with smoothgrad / smoothgrad_sq /
  vargrad (absolute noise 0.15, one sample of the batch per pass), DeepLift, GradientShap
  (noise 0.1, the black clip as baseline), Occlusion and FeatureAblation (our default window
  and tubes, ``--cam-batch`` copies per pass), KernelShap (the same tubes and number of
  samples, one clip per call as Captum asks). Captum returns input-shaped attributions; the
  reference's time includes our channel reduction of them (max |·| for saliency and the
  SmoothGrad family, max for SmoothGrad² and VarGrad, sum for the signed methods, one channel
  for the perturbation methods, whose channels carry the same value) so both sides end at
  the same ``[B, T, H, W]`` map. Captum has no RISE.
* Zennit 0.5.1: LRP-ε (ε = 1e-6 on every layer) and the composites ``EpsilonPlusFlat`` and
  ``EpsilonAlpha2Beta1``, relevance summed over channels as ``lrp``'s maps.

Each row gives both times, their ratio (reference / ours) and the largest difference of the
two maps relative to the largest value of the reference's. The random methods (the SmoothGrad
family, GradientSHAP, KernelSHAP) are timed with each library's own draws and compared once
more with ours handed to Captum (its noise, baseline and path-point draws, or its coalition
sampler, replaced for that call). LRP-ε with ε = 1e-6 divides by near-zero pre-activations:
its float32 maps differ by up to ~1e-3 of their maximum between any two implementations
(Zennit's float32 and float64 maps as much as ours and Zennit's).

PyTorch gets every core (``torch.set_num_threads``) as XLA does. Needs, next to
``.[interop]``, ``pip install scikit-learn ttach && pip install --no-deps grad-cam==1.5.7
captum==0.9.0 zennit==0.5.1`` (``--no-deps``: grad-cam's torchvision requirement would replace
the installed torch). pytorch-grad-cam and Zennit import torchvision only for image
pre-processing helpers and a ResNet canonizer; where it cannot load (a CPU-only torch with a
CUDA torchvision wheel, or none), empty modules stand in for it while they import, and the
script says so. ``--json PATH`` writes the rows with the environment (CPU, cores, load
averages at start and end).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import functools
import os
import sys
import types
import warnings
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax import attribution, models
from fer_jax.attribution.core import target_logits
from timing import cpu_name, result, seconds_per_call

MODELS = {  # name → (model kwargs, clip shape)
    "c3d": (dict(width=0.25, fc_dim=512), (16, 64, 64, 3)),
    "timesformer": (dict(patch_size=16, hidden_size=192, num_layers=4, num_heads=3),
                    (8, 112, 112, 3)),
}
UNTIMED_JIT = dict(compiler_options={  # for what is not timed (weights, checks): quick to compile
    "xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True})
SINGLE_BACKWARD = {"saliency", "input_x_gradient", "deeplift", "grad_cam", "grad_cam_pp",
                   "layer_cam", "hires_cam", "xgrad_cam", "full_grad", "lrp", "lrp_zplus",
                   "lrp_alpha_beta", "lrp_epsilon_plus_flat", "lrp_epsilon_alpha2_beta1",
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


def benchmark_methods(model, variables, x, target, table, repeats: int) -> list[dict]:
    """Prints (and returns as rows) the per-method table (see the module docstring)."""
    def forward_backward(x, t):
        return jax.grad(lambda x: target_logits(model.apply(variables, x), t).sum())(x)

    baseline_fn = jax.jit(forward_backward)
    baseline = seconds_per_call(lambda: block(baseline_fn(x, target)), repeats)
    print(f"one forward+backward over the batch: {baseline:.3f} s")
    print(f"{'method':<22}{'batched s':>11}{'/ fwd+bwd':>11}{'loop s':>10}{'speed-up':>10}")
    rows = [dict(table="cost", method="forward+backward", batched_s=baseline)]
    for name, method in table.items():
        fn = jax.jit(lambda x, t, method=method: method(model, variables, x, t))
        batched = seconds_per_call(lambda: block(fn(x, target)), repeats)
        single = [(x[i:i + 1], target[i:i + 1]) for i in range(len(x))]
        loop = seconds_per_call(lambda: block([fn(xi, ti) for xi, ti in single]), 1)
        flag = "" if name not in SINGLE_BACKWARD or batched / baseline <= 1.5 else "  (> 1.5×)"
        print(f"{name:<22}{batched:>11.3f}{batched / baseline:>10.2f}×{loop:>10.2f}"
              f"{loop / batched:>9.1f}×{flag}")
        rows.append(dict(table="cost", method=name, batched_s=batched,
                         per_forward_backward=batched / baseline, loop_s=loop))
    return rows


# --------------------------------------------------------------------------- reference libraries
def _torchvision_stand_ins(torch) -> dict:
    """Module objects for the torchvision names pytorch-grad-cam (image pre-processing helpers)
    and Zennit (its ResNet canonizer's block classes) import at load time; the functions raise
    if ever called (the methods compared never call them)."""
    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision is not available in this environment")

    names = {"torchvision": (), "torchvision.transforms": ("Compose", "Normalize", "ToTensor"),
             "torchvision.transforms.functional": ("resize",), "torchvision.models": (),
             "torchvision.models.resnet": ()}
    modules = {}
    for name, attributes in names.items():
        module = types.ModuleType(name)
        module.__path__ = []  # a package, so submodules import
        for attribute in attributes:
            setattr(module, attribute, unavailable)
        modules[name] = module
    for name, module in modules.items():
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(modules[parent], child, module)
    for block in ("BasicBlock", "Bottleneck"):
        setattr(modules["torchvision.models.resnet"], block, type(block, (torch.nn.Module,), {}))
    return modules


def import_references() -> dict:
    """``{library: module namespace or the reason it is unavailable}`` for pytorch-grad-cam,
    Captum and Zennit. Where torchvision cannot load, stand-ins take its place while
    pytorch-grad-cam and Zennit import, and are removed from ``sys.modules`` afterwards."""
    try:
        import torch
    except ImportError as e:
        return dict.fromkeys(("pytorch-grad-cam", "captum", "zennit"),
                             f"torch is not installed ({e})")
    found = {}
    try:
        import captum.attr
        found["captum"] = captum.attr
    except ImportError as e:
        found["captum"] = f"not installed ({e}; pip install --no-deps captum==0.9.0)"
    stand_ins = {}
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError) as e:
        print(f"torchvision cannot load ({str(e).splitlines()[0][:70]}); empty modules stand "
              "in for it while pytorch-grad-cam and Zennit import")
        for key in [k for k in sys.modules if k.split(".")[0] == "torchvision"]:
            del sys.modules[key]
        stand_ins = _torchvision_stand_ins(torch)
    sys.modules.update(stand_ins)
    try:
        try:
            import pytorch_grad_cam
            import pytorch_grad_cam.utils.model_targets  # noqa: F401
            found["pytorch-grad-cam"] = pytorch_grad_cam
        except ImportError as e:
            found["pytorch-grad-cam"] = (f"not installed ({e}; pip install scikit-learn ttach "
                                         "&& pip install --no-deps grad-cam==1.5.7)")
        try:
            import zennit.composites
            import zennit.rules
            import zennit.types  # noqa: F401
            found["zennit"] = zennit
        except ImportError as e:
            found["zennit"] = f"not installed ({e}; pip install --no-deps zennit==0.5.1)"
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)
    return found


def torch_c3d(model, variables):
    """PyTorch C3D with the layers and weights of our ``c3d`` ``model`` (clip mode). ReLUs
    and max pools are modules, as Captum's DeepLift needs to apply its rules to them."""
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
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(x))

    class C3D(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleDict({name: ConvReLU(name) for stage in models.cnn3d.C3D_CONVS
                                        for name in stage})
            self.pools = nn.ModuleList()
            for stage in range(len(models.cnn3d.C3D_CONVS)):
                time = 1 if stage == 0 else 2
                padding = (0, 1, 1) if stage == len(models.cnn3d.C3D_CONVS) - 1 else 0
                self.pools.append(nn.MaxPool3d((time, 2, 2), (time, 2, 2), padding))
            self.fcs = nn.ModuleList()
            for name in ("fc6", "fc7", "fc8"):
                kernel = np.asarray(params[name]["kernel"])
                fc = nn.Linear(*kernel.shape)
                fc.weight.data = torch.from_numpy(kernel.T.copy())
                fc.bias.data = torch.from_numpy(np.array(params[name]["bias"]))
                self.fcs.append(fc)
            self.relus = nn.ModuleList([nn.ReLU(), nn.ReLU()])

        def forward(self, x):  # x [B, C, T, H, W]
            for names, pool in zip(models.cnn3d.C3D_CONVS, self.pools):
                for name in names:
                    x = self.convs[name](x)
                x = pool(x)
            x = x.flatten(1)
            x = self.relus[0](self.fcs[0](x))
            x = self.relus[1](self.fcs[1](x))
            return self.fcs[2](x)

    return C3D().eval()


class Reference:
    """What every reference call shares: the PyTorch C3D with our weights, the clips in its
    layout (``[B, C, T, H, W]``), the targets, and the library modules."""

    def __init__(self, libraries, model, variables, x, target, steps: int, cam_batch: int):
        import torch
        self.torch, self.libraries = torch, libraries
        self.net = torch_c3d(model, variables)
        self.x = np.asarray(x)
        self.clips = torch.from_numpy(self.x.transpose(0, 4, 1, 2, 3).copy())
        self.target = [int(t) for t in target]
        self.steps, self.cam_batch = steps, cam_batch
        self.per_example = max(1, cam_batch // len(self.x))  # Captum's perturbations per pass
        self.groups = attribution.default_groups(self.x.shape[1:4])
        self.cam = None  # the pytorch-grad-cam object of the last CAM call
        with torch.no_grad():
            logits = self.net(self.clips).numpy()
        ours = jax.jit(model.apply, **UNTIMED_JIT)(variables, x)
        self.logit_gap = float(np.abs(logits - np.asarray(ours)).max())

    def channels_first(self, a: np.ndarray):
        """A NumPy ``[N, T, H, W, C]`` array as a torch ``[N, C, T, H, W]`` tensor."""
        return self.torch.from_numpy(np.asarray(a, np.float32).transpose(0, 4, 1, 2, 3).copy())

    def feature_mask(self):
        """Our default groups (quarter tubes) as Captum's ``feature_mask`` ``[1, 1, T, H, W]``."""
        return self.torch.from_numpy(self.groups[None, None].astype(np.int64))


REDUCE = {  # Captum's [B, C, T, H, W] → ours [B, T, H, W]: our channel reduction per method
    "max_abs": lambda a: a.abs().amax(1), "max": lambda a: a.amax(1),
    "sum": lambda a: a.sum(1), "one": lambda a: a[:, 0]}  # perturbations: channels alike


def _per_example(draws: np.ndarray, batch: int) -> np.ndarray:
    """Draws shared by the examples ``[N, …]`` → Captum's order ``[B · N, …]``."""
    return np.concatenate([draws] * batch)


@contextlib.contextmanager
def _captum_draws(ref: Reference, noise=None, picks=None, alphas=None):
    """Captum draws with ``torch.normal`` (noise), ``np.random.choice`` (baselines) and
    ``np.random.uniform`` (path points), one value per example and sample in the order
    ``example · samples + sample``; within the block these return ``[B · N, …]`` draws of
    ours instead."""
    with contextlib.ExitStack() as stack:
        if noise is not None:
            stack.enter_context(mock.patch.object(ref.torch, "normal",
                                                  lambda mean, std: noise.clone()))
        if picks is not None:
            stack.enter_context(mock.patch.object(np.random, "choice",
                                                  lambda n, size: picks.copy()))
        if alphas is not None:
            stack.enter_context(mock.patch.object(np.random, "uniform",
                                                  lambda low, high, size: alphas.copy()))
        yield


def _noise_draws(ref: Reference, samples: int, stdevs: float, rng) -> dict:
    """Our SmoothGrad noise (``gradients.py``: ``normal(rng, (samples, 1, *x.shape[1:]))``
    shared by the examples) in Captum's order."""
    noise = np.asarray(jax.random.normal(rng, (samples, 1) + ref.x.shape[1:])[:, 0]) * stdevs
    return {"noise": ref.channels_first(_per_example(noise, len(ref.x)))}


def _gradient_shap_draws(ref: Reference, samples: int, stdevs: float, rng) -> dict:
    """Our GradientSHAP draws (baseline index, path point, noise from three keys of ``rng``)
    in Captum's order; one baseline clip, so every index is 0."""
    pick, mix, draw = jax.random.split(rng, 3)
    picks = np.asarray(jax.random.randint(pick, (samples,), 0, 1))
    alphas = np.asarray(jax.random.uniform(mix, (samples,) + (1,) * ref.x.ndim)).ravel()
    noise = np.asarray(jax.random.normal(draw, (samples, 1) + ref.x.shape[1:])[:, 0]) * stdevs
    batch = len(ref.x)
    return {"noise": ref.channels_first(_per_example(noise, batch)),
            "picks": _per_example(picks, batch), "alphas": _per_example(alphas, batch)}


def captum(make, reduce: str, draws=None, **options):
    """A Captum reference: ``make(captum.attr, net)`` builds the explainer, ``attribute`` runs
    on the whole batch with ``options`` (called with the ``Reference``), and the result gets
    our channel reduction ``reduce``. ``draws(ref, **options)``: our random draws as
    ``_captum_draws`` arguments, for the check on shared draws."""
    def run(ref: Reference, shared: bool = False):
        kwargs = {k: v(ref) if callable(v) else v for k, v in options.items()}
        explainer = make(ref.libraries["captum"], ref.net)
        if not shared:
            out = explainer.attribute(ref.clips, target=ref.target, **kwargs)
        else:
            kwargs.pop("nt_samples_batch_size", None)  # our draws come as one block
            with _captum_draws(ref, **draws(ref)):
                out = explainer.attribute(ref.clips, target=ref.target, **kwargs)
        return REDUCE[reduce](out).detach().numpy()

    return run


def captum_kernel_shap(ref: Reference, shared: bool = False):
    """Captum's ``KernelShap``, one clip at a time (its coalitions are per call); ``shared``:
    with our coalitions (``shap_coalitions``, seed 0) handed to its sampler."""
    groups = int(ref.groups.max()) + 1
    samples = 4 * groups  # our default
    coalitions = np.asarray(attribution.shap_coalitions(jax.random.PRNGKey(0), samples, groups))

    def ours(original_input, **kwargs):
        for z in coalitions:
            yield ref.torch.from_numpy(z[None].astype(np.int64))

    maps = []
    for i, t in enumerate(ref.target):
        explainer = ref.libraries["captum"].KernelShap(ref.net)
        if shared:
            explainer.perturb_func = ours
        out = explainer.attribute(ref.clips[i:i + 1], baselines=0.0, target=t,
                                  feature_mask=ref.feature_mask(), n_samples=samples,
                                  perturbations_per_eval=ref.cam_batch)
        maps.append(REDUCE["one"](out).detach().numpy()[0])
    return np.stack(maps)


def grad_cam_reference(class_name: str, **options):
    """A pytorch-grad-cam CAM on ``conv5b`` of the PyTorch C3D: its end-to-end output
    (min-max-scaled maps at clip resolution); the object is kept for the check."""
    def run(ref: Reference, shared: bool = False):
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
        if ref.cam is not None:
            ref.cam.activations_and_grads.release()
        net = torch_c3d_copy(ref)
        layers = [] if class_name == "FullGrad" else [net.convs["conv5b"]]
        ref.cam = getattr(ref.libraries["pytorch-grad-cam"], class_name)(
            model=net, target_layers=layers, **options)
        import tqdm  # Ablation-CAM's and Score-CAM's progress bars, left out
        with mock.patch.object(tqdm, "tqdm", lambda iterable, *args, **kwargs: iterable):
            return ref.cam(input_tensor=ref.clips,
                           targets=[ClassifierOutputTarget(t) for t in ref.target])

    run.class_name = class_name
    return run


def torch_c3d_copy(ref: Reference):
    """The reference network for one pytorch-grad-cam object (Ablation-CAM swaps a layer of
    the network it is given, and leaves it swapped if it fails)."""
    net = copy.deepcopy(ref.net)
    for module in net.modules():  # hooks of an earlier CAM object are not copied along
        module._forward_hooks.clear()
    return net


def cam_layer_maps(ref: Reference) -> np.ndarray:
    """pytorch-grad-cam's map of the last call at the layer's resolution, before its ReLU,
    resizing and scaling: ``get_cam_image`` on the activations and gradients it recorded."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    cam = ref.cam
    activations = cam.activations_and_grads.activations[0].numpy()
    gradients = ([g.numpy() for g in cam.activations_and_grads.gradients] or [None])[0]
    targets = [ClassifierOutputTarget(t) for t in ref.target]
    layer = cam.target_layers[0]
    return cam.get_cam_image(ref.clips, layer, targets, activations, gradients, False)


def zennit_reference(composite):
    """Zennit's relevance for the target logit (the logit at the output, as ours) under
    ``composite(zennit)``, summed over channels as ``lrp``'s maps."""
    def run(ref: Reference, shared: bool = False):
        torch, zennit = ref.torch, ref.libraries["zennit"]
        x = ref.clips.clone().requires_grad_(True)
        with composite(zennit).context(ref.net) as modified:
            out = modified(x)
            rows = torch.arange(len(x))
            relevance = torch.zeros_like(out)
            relevance[rows, ref.target] = out.detach()[rows, ref.target]
            (grad,) = torch.autograd.grad(out, x, relevance)
        return REDUCE["sum"](grad).numpy()

    return run


def _epsilon_everywhere(zennit):
    """LRP-ε (ε = 1e-6, biases included) on every convolution and linear layer: ``lrp(rule=
    'epsilon')``."""
    return zennit.composites.LayerMapComposite(layer_map=[
        (zennit.types.Convolution, zennit.rules.Epsilon(epsilon=1e-6)),
        (zennit.types.Linear, zennit.rules.Epsilon(epsilon=1e-6))])


Pair = collections.namedtuple("Pair", "library ours reference check layer_maps",
                              defaults=(None, None))
"""One row of the comparison: ``ours(model, variables, x, target)`` (jit-compiled and timed
to the output the reference returns), ``reference(ref, shared=False)`` (timed), ``check``:
how the two are compared — ``'output'`` (the outputs), ``'layer'`` (CAMs: the maps at the
layer's resolution, ``layer_maps`` ours, ``cam_layer_maps`` theirs), ``'shared'`` (the
reference run once more with our random draws), ``'sign'`` (as ``'layer'``, the SVD's sign
of theirs aligned with ours); ``reference`` a string: why there is no row."""

SMOOTHGRAD_STDEVS = 0.15  # smoothgrad's default noise_level, absolute on clips in [0, 1]
GRADIENT_SHAP_STDEVS = 0.1


def _cam_pipeline(method):
    """A CAM method to pytorch-grad-cam's output: maps upsampled to the clip, min-max scaled."""
    def pipeline(model, variables, x, t):
        maps = method(model, variables, x, t)
        return attribution.normalise(attribution.upsample(maps, x.shape[1:4]))

    return pipeline


def reference_pairs(steps: int, cam_batch: int) -> dict:
    """name → ``Pair`` for every method of the C3D table that a reference library has, set up
    as the parity tests set up both sides (``tests/test_cam_family.py``,
    ``test_gradient_variants.py``, ``test_perturbation.py``, ``test_lrp_composites.py``)."""
    m = attribution.METHODS
    pairs = {}
    cams = {"grad_cam": "GradCAM", "hires_cam": "HiResCAM", "xgrad_cam": "XGradCAM",
            "eigen_grad_cam": "EigenGradCAM", "grad_cam_pp": "GradCAMPlusPlus",
            "layer_cam": "LayerCAM", "eigen_cam": "EigenCAM", "ablation_cam": "AblationCAM",
            "score_cam": "ScoreCAM", "full_grad": "FullGrad"}
    for name, class_name in cams.items():
        method = functools.partial(m[name], layer="conv5b")
        options = {}
        if name in ("ablation_cam", "score_cam"):
            method = functools.partial(method, batch_size=cam_batch)
            options = {"batch_size": cam_batch} if name == "ablation_cam" else {}
        check = "sign" if name.startswith("eigen") else "layer"
        if name == "full_grad":  # maps at clip resolution in [0, 1], no layer
            method, check = m[name], "output"
        pairs[name] = Pair("pytorch-grad-cam", _cam_pipeline(method),
                           grad_cam_reference(class_name, **options), check, method)
    pairs["score_cam"] = pairs["score_cam"]._replace(reference=_score_cam(cam_batch))

    def noise_tunnel(kind):
        return captum(lambda c, net: c.NoiseTunnel(c.Saliency(net)),
                      "max_abs" if kind == "smoothgrad" else "max",
                      lambda ref: _noise_draws(ref, steps, SMOOTHGRAD_STDEVS,
                                               jax.random.PRNGKey(0)),
                      nt_type=kind, nt_samples=steps, stdevs=SMOOTHGRAD_STDEVS, abs=False,
                      nt_samples_batch_size=1)

    pairs.update(
        saliency=Pair("captum", m["saliency"], captum(lambda c, net: c.Saliency(net),
                                                      "max_abs", abs=True), "output"),
        input_x_gradient=Pair("captum", m["input_x_gradient"], captum(
            lambda c, net: c.InputXGradient(net), "sum"), "output"),
        integrated_gradients=Pair(
            "captum", functools.partial(m["integrated_gradients"], steps=steps,
                                        internal_batch_size=1),
            captum(lambda c, net: c.IntegratedGradients(net), "sum", baselines=0.0,
                   n_steps=steps, method="gausslegendre",
                   internal_batch_size=lambda ref: len(ref.x)), "output"),
        **{kind: Pair("captum", functools.partial(
            m[kind], samples=steps, stdevs=SMOOTHGRAD_STDEVS, internal_batch_size=1),
            noise_tunnel(kind), "shared") for kind in ("smoothgrad", "smoothgrad_sq",
                                                        "vargrad")},
        deeplift=Pair("captum", m["deeplift"], captum(
            lambda c, net: c.DeepLift(net), "sum", baselines=lambda ref: ref.clips * 0),
            "output"),
        gradient_shap=Pair(
            "captum", functools.partial(m["gradient_shap"], samples=steps,
                                        stdevs=GRADIENT_SHAP_STDEVS),
            captum(lambda c, net: c.GradientShap(net), "sum",
                   lambda ref: _gradient_shap_draws(ref, steps, GRADIENT_SHAP_STDEVS,
                                                    jax.random.PRNGKey(0)),
                   baselines=lambda ref: ref.clips[:1] * 0, n_samples=steps,
                   stdevs=GRADIENT_SHAP_STDEVS), "shared"),
        occlusion=Pair(
            "captum", functools.partial(m["occlusion"], batch_size=cam_batch),
            captum(lambda c, net: c.Occlusion(net), "one", baselines=0.0,
                   sliding_window_shapes=lambda ref: _window(ref),
                   strides=lambda ref: _window(ref),
                   perturbations_per_eval=lambda ref: ref.per_example), "output"),
        feature_ablation=Pair(
            "captum", functools.partial(m["feature_ablation"], batch_size=cam_batch),
            captum(lambda c, net: c.FeatureAblation(net), "one", baselines=0.0,
                   feature_mask=Reference.feature_mask,
                   perturbations_per_eval=lambda ref: ref.per_example), "output"),
        kernel_shap=Pair("captum", functools.partial(m["kernel_shap"], batch_size=cam_batch),
                         captum_kernel_shap, "shared"),
        rise=Pair("captum", m["rise"], "Captum has no RISE (nor does Zennit or "
                  "pytorch-grad-cam): no reference row"),
        lrp=Pair("zennit", functools.partial(m["lrp"], rule="epsilon"),
                 zennit_reference(_epsilon_everywhere), "output"),
        lrp_epsilon_plus_flat=Pair(
            "zennit", functools.partial(m["lrp"], composite="epsilon_plus_flat"),
            zennit_reference(lambda z: z.composites.EpsilonPlusFlat()), "output"),
        lrp_epsilon_alpha2_beta1=Pair(
            "zennit", functools.partial(m["lrp"], composite="epsilon_alpha2_beta1"),
            zennit_reference(lambda z: z.composites.EpsilonAlpha2Beta1()), "output"))
    return pairs


def _window(ref: Reference) -> tuple[int, ...]:
    """Our default occlusion window (a quarter of each axis, stride = window) over Captum's
    channel-first clip: every channel at once."""
    return (ref.clips.shape[1], *attribution.groups.default_box(ref.x.shape[1:4]))


def _score_cam(cam_batch: int):
    run = grad_cam_reference("ScoreCAM")

    def with_batch(ref: Reference, shared: bool = False):  # ScoreCAM reads an attribute
        original = ref.libraries["pytorch-grad-cam"].ScoreCAM.__init__

        def init(self, *args, **kwargs):
            original(self, *args, **kwargs)
            self.batch_size = cam_batch

        with mock.patch.object(ref.libraries["pytorch-grad-cam"].ScoreCAM, "__init__", init):
            return run(ref, shared)

    with_batch.class_name = "ScoreCAM"
    return with_batch


VIDEO_REFUSALS = {  # why a pytorch-grad-cam class fails on a 3D CNN (the error follows)
    "ScoreCAM": "its UpsamplingBilinear2d takes 4-D activations only",
    "AblationCAM": "its AblationLayer repeats 4-D activations only",
    "FullGrad": "it takes Conv2d / BatchNorm2d biases only and resizes 2-D maps",
}


def _difference(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Largest |ours − theirs| relative to the largest |theirs|."""
    return float(np.abs(np.asarray(ours, np.float64) - theirs).max() / np.abs(theirs).max())


def check(pair: Pair, ref: Reference, model, variables, x, target, ours: np.ndarray,
          theirs: np.ndarray) -> tuple[float, str]:
    """``(difference, what was compared)`` for one pair (see ``Pair``)."""
    if pair.check == "output":
        return _difference(ours, theirs), "outputs"
    if pair.check == "shared":
        return _difference(ours, pair.reference(ref, shared=True)), "on our random draws"
    our_maps = np.asarray(jax.jit(lambda x, t: pair.layer_maps(model, variables, x, t),
                                  **UNTIMED_JIT)(x, target))
    their_maps = cam_layer_maps(ref)
    if pair.check == "sign":  # the SVD's sign is arbitrary in pytorch-grad-cam
        their_maps = their_maps * np.sign((their_maps * our_maps).sum(
            axis=tuple(range(1, our_maps.ndim)), keepdims=True))
    return (_difference(our_maps, np.maximum(their_maps, 0)),
            f"maps at the layer's resolution {'×'.join(map(str, our_maps.shape[1:]))}")


def compare_references(model, variables, x, target, pairs: dict, steps: int, cam_batch: int,
                       repeats: int) -> list[dict]:
    """Prints (and returns as rows) each method of ``pairs`` against its reference library on
    the equivalent PyTorch C3D, the same clips and targets."""
    libraries = import_references()
    import torch
    torch.set_num_threads(os.cpu_count())
    for library in sorted({p.library for p in pairs.values()}):
        if isinstance(libraries[library], str):
            print(f"{library} {libraries[library]}: its rows are left out")
    ref = Reference(libraries, model, variables, x, target, steps, cam_batch)
    print(f"\nPyTorch C3D with the same weights: max |logit difference| {ref.logit_gap:.2e}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("Against the reference libraries on the same clips and targets (s per call; ratio = "
          "reference / ours;\ndifference = max |ours − theirs| / max |theirs|):")
    print(f"{'method':<26}{'library':<18}{'ours s':>9}{'ref s':>9}{'ratio':>8}  difference")
    rows = []
    warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")  # requires_grad
    for name, pair in pairs.items():
        if isinstance(libraries[pair.library], str):
            continue
        if isinstance(pair.reference, str):
            print(f"{name:<26}{pair.reference}")
            rows.append(dict(method=name, library=pair.library, unavailable=pair.reference))
            continue
        last = {}
        try:
            theirs_s = seconds_per_call(lambda: last.update(out=pair.reference(ref)), repeats)
        except Exception as e:  # noqa: BLE001 (a reference that cannot take video)
            error = f"{type(e).__name__}: {str(e).splitlines()[0]}"
            reason = VIDEO_REFUSALS.get(getattr(pair.reference, "class_name", None), error)
            print(f"{name:<26}{pair.library:<18}cannot run on video: {reason} "
                  f"({type(e).__name__})")
            rows.append(dict(method=name, library=pair.library,
                             unavailable=f"cannot run on video: {reason} ({error})"))
            continue
        fn = jax.jit(lambda x, t, ours=pair.ours: ours(model, variables, x, t))
        ours_s = seconds_per_call(lambda: block(fn(x, target)), repeats)
        difference, compared = check(pair, ref, model, variables, x, target,
                                     np.asarray(fn(x, target)), np.asarray(last["out"]))
        print(f"{name:<26}{pair.library:<18}{ours_s:>9.3f}{theirs_s:>9.3f}"
              f"{theirs_s / ours_s:>7.2f}×  {difference:.1e} ({compared})")
        rows.append(dict(method=name, library=pair.library, ours_s=ours_s,
                         reference_s=theirs_s, ratio=theirs_s / ours_s,
                         difference=difference, compared=compared))
    if ref.cam is not None:
        ref.cam.activations_and_grads.release()
    return rows


def main(argv=None) -> dict:
    """Runs the benchmark with command-line ``argv``; returns (and with ``--json`` writes)
    ``{'environment': {...}, 'rows': [...]}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=list(MODELS), default="c3d")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after a warm-up")
    parser.add_argument("--steps", type=int, default=8,
                        help="integrated-gradients nodes / SmoothGrad samples")
    parser.add_argument("--methods", nargs="+", help="subset of the methods to time")
    parser.add_argument("--num-classes", type=int, default=7)
    parser.add_argument("--clip", nargs=3, type=int, metavar=("T", "H", "W"),
                        help="clip size (default: the model's, see MODELS)")
    parser.add_argument("--cam-batch", type=int, default=32,
                        help="perturbed copies per forward pass (Score-CAM, Ablation-CAM, "
                        "occlusion, feature ablation, RISE, KernelSHAP)")
    parser.add_argument("--cost", action=argparse.BooleanOptionalAction, default=True,
                        help="the table of each method against one forward+backward")
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                        help="the comparison with pytorch-grad-cam, Captum and Zennit "
                        "(--model c3d)")
    parser.add_argument("--json", default="", help="write the results here")
    args = parser.parse_args(argv)

    kwargs, shape = MODELS[args.model]
    shape = shape if args.clip is None else (*args.clip, shape[-1])
    model = models.build(args.model, num_classes=args.num_classes, **kwargs)
    x = jax.random.uniform(jax.random.PRNGKey(0), (args.batch, *shape), jnp.float32)
    variables = jax.jit(model.init, **UNTIMED_JIT)(jax.random.PRNGKey(1), x[:1])
    target = jnp.arange(args.batch, dtype=jnp.int32) % args.num_classes
    table = method_table(args.model, args.steps, args.cam_batch)
    if args.methods:
        unknown = set(args.methods) - set(table)
        if unknown:
            parser.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(table)}")
        table = {name: table[name] for name in args.methods}
    environment = dict(cpu=cpu_name(), cpu_count=os.cpu_count(), jax=jax.__version__,
                       platform=jax.devices()[0].platform, model=args.model, model_kwargs=kwargs,
                       clip=list(shape), batch=args.batch, repeats=args.repeats,
                       steps=args.steps, cam_batch=args.cam_batch,
                       load_average_start=list(os.getloadavg()))
    print(f"jax {jax.__version__} on {environment['platform']} ({cpu_name()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}); {args.model} "
          f"{kwargs}, batch {args.batch} × {'×'.join(map(str, shape))}, {args.repeats} timed "
          "calls")
    rows = []
    if args.cost:
        rows += benchmark_methods(model, variables, x, target, table, args.repeats)
    if args.reference and args.model == "c3d":
        pairs = {name: pair for name, pair in reference_pairs(args.steps, args.cam_batch).items()
                 if name in table}
        rows += [dict(table="reference", **row) for row in compare_references(
            model, variables, x, target, pairs, args.steps, args.cam_batch, args.repeats)]
    environment["load_average_end"] = list(os.getloadavg())
    return result(environment, rows, args.json)


if __name__ == "__main__":
    main()
