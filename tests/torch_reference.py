"""Helpers for the parity tests against PyTorch reference models (needs torch)."""
import torch

nn = torch.nn


def randomise(module, seed: int = 0, bn_scale: tuple[float, float] = (0.5, 1.5)):
    """He-scaled weights, small biases and random BatchNorm statistics (scales uniform in
    ``bn_scale``), so every parameter and buffer matters and activations stay O(1) through
    the depth of the network; returns the module in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    low, high = bn_scale
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * (high - low) + low)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return module.eval()


def state(module) -> dict:
    """The module's state dict as NumPy arrays."""
    return {k: v.numpy() for k, v in module.state_dict().items()}


def _unavailable(*args, **kwargs):
    raise RuntimeError("torchvision is not available in this environment")


def import_pytorch_grad_cam():
    """The ``pytorch_grad_cam`` package (``pip install --no-deps grad-cam==1.5.7 ttach``), or
    a skip of the calling test.

    torchvision does not install next to this CPU torch; pytorch-grad-cam imports it only for
    image pre-processing helpers the CAM classes never call. Where it cannot load, empty
    stand-ins take its place while the package imports and are removed from ``sys.modules``
    afterwards (so other libraries still see no torchvision)."""
    import importlib
    import sys
    import types

    import pytest

    stubs = {}
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        for key in [k for k in sys.modules if k.split(".")[0] == "torchvision"]:
            del sys.modules[key]
        names = {"torchvision": (), "torchvision.transforms": ("Compose", "Normalize", "ToTensor"),
                 "torchvision.transforms.functional": ("resize",)}
        for name, attributes in names.items():
            stubs[name] = types.ModuleType(name)
            stubs[name].__path__ = []
            for attribute in attributes:
                setattr(stubs[name], attribute, _unavailable)
        stubs["torchvision"].transforms = stubs["torchvision.transforms"]
        stubs["torchvision.transforms"].functional = stubs["torchvision.transforms.functional"]
    sys.modules.update(stubs)
    try:
        module = importlib.import_module("pytorch_grad_cam")
        importlib.import_module("pytorch_grad_cam.utils.model_targets")
    except ImportError as e:
        pytest.skip(f"parity with pytorch-grad-cam needs `pip install --no-deps grad-cam==1.5.7 "
                    f"ttach` ({e})")
    finally:
        for name in stubs:
            sys.modules.pop(name, None)
    return module
