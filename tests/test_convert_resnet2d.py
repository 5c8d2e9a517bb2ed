"""torchvision ResNet → ``resnet2d_50`` against a PyTorch reference with torchvision's module
names (CPU)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast import fast_jit

from fer_jax import attribution, models
from fer_jax.errors import UserError
from fer_jax.models import pretrained
from fer_jax.models.convert import resnet2d_from_torchvision
from fer_jax.models.convert.__main__ import main as convert_main

torch = pytest.importorskip("torch", reason="parity tests need torch (pip install '.[interop]')")
nn = torch.nn
from torch_reference import randomise, state as numpy_state  # noqa: E402


# --- torchvision's resnet50 layout (torchvision itself does not install next to this CPU torch) ---

class Bottleneck(nn.Module):
    """torchvision ``Bottleneck`` (v1.5: the stride on ``conv2``)."""

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(nn.Module):
    """Same modules and state-dict keys as ``torchvision.models.resnet50()`` (``layers=(3, 4,
    23, 3)``: resnet101); ``base`` < 64 narrows every layer."""

    def __init__(self, layers=(3, 4, 6, 3), num_classes=1000, base=64):
        super().__init__()
        self.inplanes = base
        self.conv1 = nn.Conv2d(3, base, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        for stage, blocks in enumerate(layers):
            setattr(self, f"layer{stage + 1}",
                    self._make_layer(base * 2**stage, blocks, 1 if stage == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):  # [N, 3, H, W] → logits [N, num_classes]
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _reference(layers, base, seed=0):
    with torch.device("meta"):  # skip the default initialisation: randomise sets every weight
        model = TorchResNet(layers, base=base)
    return randomise(model.to_empty(device="cpu"), seed, (0.25, 0.75))


@pytest.fixture(scope="module")
def resnet50_narrow():
    """torchvision's resnet50 at 1/8 width (conv1: 8 channels, layer4: 256)."""
    return _reference((3, 4, 6, 3), base=8)


@pytest.fixture(scope="module")
def tiny():
    """One block per stage at 1/8 width."""
    return _reference((1, 1, 1, 1), base=8, seed=1)


def test_resnet50_parity_per_frame(resnet50_narrow):
    """Frames of a video go through the network one by one and their logits are averaged;
    odd feature-map sizes (48×40 → 3×3 at layer3) exercise the strided paddings."""
    module, variables = resnet2d_from_torchvision(resnet50_narrow.state_dict())  # tensors
    assert module.stage_sizes == (3, 4, 6, 3) and module.width == 0.125
    assert module.num_classes == 1000 and not module.large_maps
    video = np.random.default_rng(0).standard_normal((2, 3, 48, 40, 3)).astype(np.float32)
    ours = np.asarray(fast_jit(module.apply)(variables, jnp.asarray(video)))
    with torch.no_grad():
        frames = torch.from_numpy(video.reshape(6, 48, 40, 3)).permute(0, 3, 1, 2)
        reference = resnet50_narrow(frames).numpy().reshape(2, 3, 1000).mean(axis=1)
    assert ours.shape == (2, 1000)
    scale = np.abs(reference).max()
    assert scale > 0.1  # a meaningful scale for the tolerance
    error = np.abs(ours - reference).max()
    assert error <= 1e-4 * scale, (error, scale)


def test_images_parity_new_head_and_layout(tiny):
    state = numpy_state(tiny)
    module, variables = resnet2d_from_torchvision(state)
    assert module.stage_sizes == (1, 1, 1, 1)
    images = np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype(np.float32)
    ours = np.asarray(fast_jit(module.apply)(variables, jnp.asarray(images)[:, None]))
    with torch.no_grad():
        reference = tiny(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    assert np.abs(ours - reference).max() <= 1e-4 * np.abs(reference).max()

    params, stats = variables["params"], variables["batch_stats"]
    np.testing.assert_array_equal(params["layer2_0"]["conv2"]["conv"]["kernel"],
                                  state["layer2.0.conv2.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["layer3_0"]["downsample"]["bn"]["scale"],
                                  state["layer3.0.downsample.1.weight"])
    np.testing.assert_array_equal(stats["conv1"]["bn"]["mean"], state["bn1.running_mean"])
    np.testing.assert_array_equal(params["fc"]["kernel"], state["fc.weight"].T)

    # A new head: fresh fc from the seed, everything else as before; model fields pass through.
    module7, variables7 = resnet2d_from_torchvision(state, num_classes=7, seed=3, dense=True)
    assert module7.num_classes == 7 and module7.dense
    assert variables7["params"]["fc"]["kernel"].shape == (256, 7)
    np.testing.assert_array_equal(variables7["params"]["layer4_0"]["conv3"]["conv"]["kernel"],
                                  params["layer4_0"]["conv3"]["conv"]["kernel"])
    np.testing.assert_array_equal(variables7["batch_stats"]["layer4_0"]["conv3"]["bn"]["var"],
                                  stats["layer4_0"]["conv3"]["bn"]["var"])
    logits = jax.eval_shape(module7.apply, variables7, jnp.asarray(images)[:, None])
    assert logits.shape == (2, 1, 7)


@pytest.mark.parametrize("large_maps,size", [(False, 2), (True, 8)])
def test_large_maps_reads_the_same_weights(tiny, large_maps, size):
    """``large_maps`` keeps layer3 and layer4 at stride 1: 1/8 of a 64 px input."""
    module, variables = resnet2d_from_torchvision(numpy_state(tiny), large_maps=large_maps)
    assert module.large_maps == large_maps and module.attribution_layer == "layer4_0"
    x = jnp.zeros((1, 1, 64, 64, 3))
    act, logits = jax.eval_shape(lambda x: attribution.layer_activations(
        module, variables, x, module.attribution_layer), x)
    assert act.shape == (1, 1, size, size, 256) and logits.shape == (1, 1000)


def test_stage_sizes_and_width_follow_the_checkpoint():
    """ResNet-101 (3, 4, 23, 3) converts too, and full width is ResNet-50's 25.6M parameters."""
    resnet101 = _reference((3, 4, 23, 3), base=4)
    module, variables = resnet2d_from_torchvision(numpy_state(resnet101))
    assert module.stage_sizes == (3, 4, 23, 3) and module.width == 4 / 64
    count = sum(a.size for a in jax.tree.leaves(variables["params"]))
    assert count == sum(p.numel() for p in resnet101.parameters())

    module, variables = resnet2d_from_torchvision(numpy_state(_reference((3, 4, 6, 3), base=64)))
    assert module.stage_sizes == (3, 4, 6, 3) and module.width == 1.0
    assert sum(a.size for a in jax.tree.leaves(variables["params"])) == 25_557_032


def test_errors_are_one_line(tiny):
    state = numpy_state(tiny)
    with pytest.raises(UserError, match="no 'layer2.0.bn3.running_var'"):
        resnet2d_from_torchvision({k: v for k, v in state.items()
                                   if k != "layer2.0.bn3.running_var"})
    with pytest.raises(UserError, match="1 weights this model does not use.*layer1.0.conv4"):
        resnet2d_from_torchvision({**state,
                                   "layer1.0.conv4.weight": state["layer1.0.conv1.weight"]})
    with pytest.raises(UserError, match="do not fit.*layer2_0"):
        resnet2d_from_torchvision({**state, "layer2.0.conv1.weight": np.zeros((16, 20, 1, 1))})
    with pytest.raises(UserError, match="no 'conv1.weight'"):  # not a ResNet at all
        resnet2d_from_torchvision({"features.0.weight": np.zeros((64, 3, 3, 3))})
    # The head of the checkpoint is dropped only when a new one replaces it.
    with pytest.raises(UserError, match="no 'fc.bias'"):
        resnet2d_from_torchvision({k: v for k, v in state.items() if k != "fc.bias"})
    resnet2d_from_torchvision({k: v for k, v in state.items() if k != "fc.bias"}, num_classes=7)


def test_command_line_round_trip(tiny, tmp_path, capsys):
    checkpoint = tmp_path / "resnet50.pth"
    torch.save(tiny.state_dict(), checkpoint)
    weights = tmp_path / "resnet50.msgpack"
    assert convert_main(["resnet2d", str(checkpoint), str(weights), "--num-classes", "7"]) == 0
    assert "--config.model.name=resnet2d_50" in capsys.readouterr().out
    variables, name, kwargs = pretrained.load(weights)
    assert name == "resnet2d_50"
    assert kwargs == {"stage_sizes": [1, 1, 1, 1], "width": 0.125, "large_maps": False,
                      "dense": False, "dropout": 0.0}
    _, expected = resnet2d_from_torchvision(numpy_state(tiny), num_classes=7)
    jax.tree.map(np.testing.assert_array_equal, variables, jax.tree.map(np.asarray, expected))
    # The written settings rebuild a model these variables fit.
    module = models.build(name, num_classes=7, **kwargs)
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, 1, 32, 32, 3)))
    assert jax.tree.map(np.shape, variables) == jax.tree.map(lambda a: a.shape, shapes)
