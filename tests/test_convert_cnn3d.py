"""3D-CNN converters against PyTorch references: torchvision-layout VGG-16 (inflated) and
hassony2/kinetics_i3d_pytorch I3D (CPU)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast import fast_jit

from fer_jax.errors import UserError
from fer_jax.models.convert.cnn3d import i3d_from_pytorch, vgg16_3d_from_torchvision

torch = pytest.importorskip("torch", reason="parity tests need torch (pip install '.[interop]')")
nn = torch.nn
from torch_reference import randomise, state as numpy_state  # noqa: E402

# --- torchvision VGG-16 layout (torchvision itself does not install next to this CPU torch) ---

class TorchVGG16(nn.Module):
    """Same modules and state-dict keys as ``torchvision.models.vgg16()``; fc6 / fc7 are
    ``hidden`` wide (4096 there; the converter reads the width from the state dict)."""

    CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, num_classes=1000, hidden=4096):
        super().__init__()
        layers, channels = [], 3
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden, num_classes))

    def fc7(self, x):
        """ReLU'd fc7 features ``[N, hidden]`` of images ``[N, 3, H, W]``."""
        return self.classifier[:5](torch.flatten(self.avgpool(self.features(x)), 1))


@pytest.fixture(scope="module")
def vgg():
    with torch.device("meta"):  # skip the default initialisation: randomise sets every weight
        model = TorchVGG16(hidden=512)  # 28M parameters instead of 138M: the suite's memory
    return randomise(model.to_empty(device="cpu"))


@pytest.fixture(scope="module")
def converted_vgg(vgg):
    state = numpy_state(vgg)
    return (state,) + vgg16_3d_from_torchvision(state, num_classes=5, dense=True, seed=3)


def test_vgg16_inflated_matches_2d_per_frame(vgg, converted_vgg):
    """A temporally constant video through the inflated network gives the 2D network's output
    on every frame the temporal zero padding cannot reach: 13 'SAME' k_t=3 convolutions move
    the border effect 13 frames inwards, so of 27 frames the middle one (13) is exact. The new
    head is compared by applying its weights to the torch fc7 features."""
    _, module, variables = converted_vgg
    image = np.random.default_rng(0).standard_normal((1, 3, 48, 40)).astype(np.float32)
    video = np.broadcast_to(image.transpose(0, 2, 3, 1)[:, None], (1, 27, 48, 40, 3))
    ours = np.asarray(fast_jit(module.apply)(variables, jnp.asarray(video)))  # [1, 27, 5]
    assert ours.shape == (1, 27, 5)

    head = jax.tree.map(lambda a: torch.tensor(np.asarray(a)), variables["params"]["head"])
    with torch.no_grad():
        fc7 = vgg.fc7(torch.from_numpy(image))
        hidden = torch.relu(fc7 @ head["hidden"]["kernel"] + head["hidden"]["bias"])
        reference = (hidden @ head["logits"]["kernel"] + head["logits"]["bias"]).numpy()
    error = np.abs(ours[0, 13] - reference[0]).max()
    assert error <= 1e-4, error
    assert np.abs(reference).max() > 0.1  # a meaningful scale for the absolute tolerance
    # At the ends the zero padding in time does change the output.
    assert np.abs(ours[0, 0] - reference[0]).max() > 1e-3


def test_vgg16_conversion_layout_and_errors(converted_vgg):
    state, module, variables = converted_vgg
    params = variables["params"]
    kernel_2d = state["features.28.weight"].transpose(2, 3, 1, 0)  # [3, 3, I, O]
    np.testing.assert_allclose(params["conv5_3"]["conv"]["kernel"],
                               np.broadcast_to(kernel_2d / 3, (3,) + kernel_2d.shape))
    np.testing.assert_array_equal(params["fc6"]["kernel"], state["classifier.0.weight"].T)
    assert params["head"]["logits"]["kernel"].shape == (128, 5)
    assert module.dense and module.fc_dim == 512 and module.time_kernel == 3
    # The 2D model's own classifier is dropped; anything else unused or missing is an error,
    # and so are weights that do not fit the requested architecture.
    with pytest.raises(UserError, match="features.0.bias"):
        vgg16_3d_from_torchvision({k: v for k, v in state.items() if k != "features.0.bias"}, 7)
    with pytest.raises(UserError, match="does not use"):
        vgg16_3d_from_torchvision({**state, "features.30.weight": state["features.28.weight"]}, 7)
    with pytest.raises(UserError, match="do not fit.*fc6"):
        vgg16_3d_from_torchvision({**state, "classifier.0.weight": np.zeros((4096, 100))}, 7)


# --- hassony2/kinetics_i3d_pytorch (src/i3dpt.py), compact but computing the same thing ---

def get_padding_shape(kernel, stride, mod=0):
    """TF 'SAME' padding as ConstantPad3d arguments. Like i3dpt.py, ``mod`` (input length modulo
    the stride) is applied to time only, and the list is reordered to (H, H, W, W, T, T), which
    ConstantPad3d reads as (W, W, H, H, T, T) — the same thing for square kernels."""
    shape = []
    for i, (k, s) in enumerate(zip(kernel, stride)):
        along = max(k - mod, 0) if i == 0 and mod else max(k - s, 0)
        shape += [along // 2, along - along // 2]
    return tuple(shape[2:] + shape[:2])


class Unit3Dpy(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=(1, 1, 1), stride=(1, 1, 1),
                 activation="relu", use_bias=False, use_bn=True):
        super().__init__()
        self.stride, self.activation, self.use_bn = stride, activation, use_bn
        padding_shape = get_padding_shape(kernel_size, stride)
        self.simplify_pad = len(set(padding_shape)) == 1
        if self.simplify_pad:
            self.conv3d = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride,
                                    padding=padding_shape[0], bias=use_bias)
        else:  # the padding depends on the input length modulo the temporal stride
            self.pads = [nn.ConstantPad3d(get_padding_shape(kernel_size, stride, mod), 0)
                         for mod in range(stride[0])]
            self.conv3d = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride,
                                    bias=use_bias)
        if use_bn:
            self.batch3d = nn.BatchNorm3d(out_channels, eps=1e-3)

    def forward(self, inp):
        if not self.simplify_pad:
            inp = self.pads[inp.shape[2] % self.stride[0]](inp)
        out = self.conv3d(inp)
        if self.use_bn:
            out = self.batch3d(out)
        return torch.relu(out) if self.activation == "relu" else out


class MaxPool3dTFPadding(nn.Module):
    """Zero padding (the inputs are ReLU outputs) then a ceil-mode max-pool."""

    def __init__(self, kernel_size, stride):
        super().__init__()
        self.pad = nn.ConstantPad3d(get_padding_shape(kernel_size, stride), 0)
        self.pool = nn.MaxPool3d(kernel_size, stride, ceil_mode=True)

    def forward(self, inp):
        return self.pool(self.pad(inp))


class Mixed(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.branch_0 = Unit3Dpy(in_channels, out_channels[0])
        self.branch_1 = nn.Sequential(Unit3Dpy(in_channels, out_channels[1]),
                                      Unit3Dpy(out_channels[1], out_channels[2], (3, 3, 3)))
        self.branch_2 = nn.Sequential(Unit3Dpy(in_channels, out_channels[3]),
                                      Unit3Dpy(out_channels[3], out_channels[4], (3, 3, 3)))
        self.branch_3 = nn.Sequential(MaxPool3dTFPadding((3, 3, 3), (1, 1, 1)),
                                      Unit3Dpy(in_channels, out_channels[5]))

    def forward(self, inp):
        return torch.cat([self.branch_0(inp), self.branch_1(inp), self.branch_2(inp),
                          self.branch_3(inp)], 1)


class TorchI3D(nn.Module):
    """``avg_pool_size`` is (2, 7, 7) in i3dpt.py (224×224 inputs); smaller inputs need a smaller
    window, which our model chooses itself by clipping (2, 7, 7) to the feature map."""

    MIXED = (("mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
             ("mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
             ("maxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
             ("mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
             ("mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
             ("mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
             ("mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
             ("mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
             ("maxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
             ("mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
             ("mixed_5c", 832, (384, 192, 384, 48, 128, 128)))

    def __init__(self, num_classes=400, avg_pool_size=(2, 7, 7)):
        super().__init__()
        self.conv3d_1a_7x7 = Unit3Dpy(3, 64, (7, 7, 7), (2, 2, 2))
        self.maxPool3d_2a_3x3 = MaxPool3dTFPadding((1, 3, 3), (1, 2, 2))
        self.conv3d_2b_1x1 = Unit3Dpy(64, 64)
        self.conv3d_2c_3x3 = Unit3Dpy(64, 192, (3, 3, 3))
        self.maxPool3d_3a_3x3 = MaxPool3dTFPadding((1, 3, 3), (1, 2, 2))
        for name, a, b in self.MIXED:
            setattr(self, name, Mixed(a, b) if name.startswith("mixed") else
                    MaxPool3dTFPadding(a, b))
        self.avg_pool = nn.AvgPool3d(avg_pool_size, (1, 1, 1))
        self.dropout = nn.Dropout(0.0)
        self.conv3d_0c_1x1 = Unit3Dpy(1024, num_classes, activation=None, use_bias=True,
                                      use_bn=False)

    def forward(self, inp):  # [B, 3, T, H, W] → logits [B, num_classes]
        out = inp
        for name in ("conv3d_1a_7x7", "maxPool3d_2a_3x3", "conv3d_2b_1x1", "conv3d_2c_3x3",
                     "maxPool3d_3a_3x3") + tuple(m[0] for m in self.MIXED):
            out = getattr(self, name)(out)
        out = self.conv3d_0c_1x1(self.dropout(self.avg_pool(out)))
        return out.squeeze(3).squeeze(3).mean(2)


@pytest.fixture(scope="module")
def i3d():
    return randomise(TorchI3D(num_classes=400, avg_pool_size=(2, 2, 2)))


@pytest.mark.parametrize("frames", [16, 15])  # 15: the odd length takes the other conv1 padding
def test_i3d_parity(i3d, frames):
    module, variables = i3d_from_pytorch(numpy_state(i3d))
    video = np.random.default_rng(frames).standard_normal((1, frames, 64, 64, 3)).astype(
        np.float32)
    ours = np.asarray(fast_jit(module.apply)(variables, jnp.asarray(video)))
    with torch.no_grad():
        reference = i3d(torch.from_numpy(video).permute(0, 4, 1, 2, 3)).numpy()
    assert ours.shape == reference.shape == (1, 400)
    error = np.abs(ours - reference).max()
    assert error <= 1e-4, error
    assert np.abs(reference).max() > 0.1


def test_i3d_parameter_count_and_new_head(i3d):
    state = numpy_state(i3d)
    module, variables = i3d_from_pytorch(state, num_classes=7, dense=True)
    params = variables["params"]
    assert module.num_classes == 7 and module.dense
    assert params["conv3d_0c_1x1"]["kernel"].shape == (1, 1, 1, 1024, 7)
    weight = state["mixed_4b.branch_1.1.conv3d.weight"]  # [O, I, T, H, W]
    np.testing.assert_array_equal(params["mixed_4b"]["branch_1_1"]["conv"]["kernel"],
                                  weight.transpose(2, 3, 4, 1, 0))
    np.testing.assert_array_equal(variables["batch_stats"]["mixed_5c"]["branch_3_1"]["bn"]["var"],
                                  state["mixed_5c.branch_3.1.batch3d.running_var"])
    # Trainable parameter count equals the reference's (BatchNorm running statistics aside).
    _, full = i3d_from_pytorch(state)
    count = sum(a.size for a in jax.tree.leaves(full["params"]))
    assert count == sum(p.numel() for p in i3d.parameters()) == 12_697_264
    with pytest.raises(UserError, match="mixed_5c.branch_0.conv3d.weight"):
        i3d_from_pytorch({k: v for k, v in state.items() if "mixed_5c.branch_0.conv3d" not in k})

