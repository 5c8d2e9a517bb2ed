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
