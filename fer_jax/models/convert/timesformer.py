"""TimeSformer weights from HF transformers and from the official facebookresearch release.

>>> import torch
>>> from transformers import TimesformerForVideoClassification
>>> hf = TimesformerForVideoClassification.from_pretrained('facebook/timesformer-base-finetuned-k400')
>>> state = {k: v.numpy() for k, v in hf.state_dict().items()}
>>> module, variables = convert.timesformer_from_hf(state, hf.config.to_dict())
>>> logits = module.apply(variables, video)      # video [B, T, H, W, 3], HF takes [B, T, 3, H, W]

>>> ckpt = torch.load('TimeSformer_divST_8x32_224_K400.pyth', map_location='cpu')
>>> module, variables = convert.timesformer_from_official(ckpt, num_heads=12)

Both layouts order tokens as ours (cls, then patch-major / frame-minor), so the conversion is
a renaming plus PyTorch → Flax kernel transposes; ``num_classes`` different from the
checkpoint's replaces the classifier with a freshly initialised one (fine-tuning).
"""
from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax import models
from fer_jax.errors import UserError
from fer_jax.models.convert.common import (KeyTracker, check_shapes, conv_kernel, dense_kernel,
                                           nest, to_numpy)

# Our block parameter → (HF suffix, official suffix) for the modules every block type has.
_BLOCK_COMMON = {
    "layernorm_before": ("layernorm_before", "norm1"),
    "attention/qkv": ("attention.attention.qkv", "attn.qkv"),
    "attention/proj": ("attention.output.dense", "attn.proj"),
    "layernorm_after": ("layernorm_after", "norm2"),
    "mlp/fc1": ("intermediate.dense", "mlp.fc1"),
    "mlp/fc2": ("output.dense", "mlp.fc2"),
}
_BLOCK_DIVIDED = {
    "temporal_layernorm": ("temporal_layernorm", "temporal_norm1"),
    "temporal_attention/qkv": ("temporal_attention.attention.qkv", "temporal_attn.qkv"),
    "temporal_attention/proj": ("temporal_attention.output.dense", "temporal_attn.proj"),
    "temporal_dense": ("temporal_dense", "temporal_fc"),
}
# Top-level modules: ours → (HF, official).
_TOP = {
    "patch_embeddings": ("timesformer.embeddings.patch_embeddings.projection",
                         "model.patch_embed.proj"),
    "layernorm": ("timesformer.layernorm", "model.norm"),
    "classifier": ("classifier", "model.head"),
}
_TOP_ARRAYS = {
    "cls_token": ("timesformer.embeddings.cls_token", "model.cls_token"),
    "position_embeddings": ("timesformer.embeddings.position_embeddings", "model.pos_embed"),
    "time_embeddings": ("timesformer.embeddings.time_embeddings", "model.time_embed"),
}
_LAYER_PREFIX = ("timesformer.encoder.layer.{}.", "model.blocks.{}.")


def _module(keys: KeyTracker, ours: str, theirs: str) -> dict[str, np.ndarray]:
    """One Linear / Conv2d / LayerNorm → Flax parameter leaves under ``ours``."""
    weight, bias = keys[theirs + ".weight"], keys[theirs + ".bias"]
    if weight.ndim == 1:  # LayerNorm
        return {f"{ours}/scale": weight, f"{ours}/bias": bias}
    kernel = conv_kernel(weight) if weight.ndim == 4 else dense_kernel(weight)
    return {f"{ours}/kernel": kernel, f"{ours}/bias": bias}


def _convert(state_dict: Mapping, layout: int, source: str, kwargs: dict, num_frames: int,
             num_classes: int | None, seed: int):
    """Shared body: ``layout`` 0 = HF names, 1 = official names."""
    keys = KeyTracker(to_numpy(state_dict), source)
    divided = kwargs["attention_type"] == "divided_space_time"
    flat = {}
    for ours, names in _TOP.items():
        if ours == "classifier" and (names[layout] + ".weight") not in keys:
            continue
        flat.update(_module(keys, ours, names[layout]))
    for ours, names in _TOP_ARRAYS.items():
        if ours == "time_embeddings" and kwargs["attention_type"] == "space_only":
            continue
        flat[ours] = keys[names[layout]].reshape(-1, kwargs["hidden_size"])
    flat["cls_token"] = flat["cls_token"].reshape(-1)
    block = {**_BLOCK_COMMON, **(_BLOCK_DIVIDED if divided else {})}
    for i in range(kwargs["num_layers"]):
        prefix = _LAYER_PREFIX[layout].format(i)
        for ours, names in block.items():
            flat.update(_module(keys, f"blocks_{i}/{ours}", prefix + names[layout]))
    keys.check_all_used()

    checkpoint_classes = flat["classifier/bias"].shape[0] if "classifier/bias" in flat else None
    if num_classes is None:
        if checkpoint_classes is None:
            raise UserError(f"{source} state dict has no classifier; pass num_classes= to "
                            f"initialise a new one")
        num_classes = checkpoint_classes
    if num_classes != checkpoint_classes:  # new head for fine-tuning
        dim = kwargs["hidden_size"]
        head = jax.random.truncated_normal(jax.random.PRNGKey(seed), -2.0, 2.0,
                                           (dim, num_classes)) * 0.02
        flat["classifier/kernel"] = np.asarray(head, np.float32)
        flat["classifier/bias"] = np.zeros(num_classes, np.float32)

    module = models.build("timesformer", num_classes=num_classes, **kwargs)
    variables = {"params": jax.tree.map(jnp.asarray, nest(flat))}
    _check_shapes(module, variables, num_frames)
    return module, variables


def _check_shapes(module, variables, num_frames: int) -> None:
    """Compares the converted tree with the module's own parameter shapes."""
    num_patches = variables["params"]["position_embeddings"].shape[0] - 1
    side = int(round(num_patches ** 0.5)) * module.patch_size
    channels = variables["params"]["patch_embeddings"]["kernel"].shape[2]
    x = jax.ShapeDtypeStruct((1, num_frames, side, side, channels), jnp.float32)
    expected = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)["params"]
    check_shapes(variables["params"], expected, "TimeSformer")


def timesformer_from_hf(state_dict: Mapping, hf_config: Mapping, *,
                        num_classes: int | None = None, dtype=jnp.float32, seed: int = 0):
    """HF ``TimesformerForVideoClassification`` (or ``TimesformerModel`` with ``num_classes``)
    → ``(TimeSformer module, variables)``.

    ``state_dict``: name → array (NumPy or torch); ``hf_config``: the model's ``config.json``
    as a dict. Input layouts differ: HF takes ``[B, T, C, H, W]``, the module ``[B, T, H, W, C]``.
    """
    state_dict = to_numpy(state_dict)
    state_dict = {(k if k.startswith(("timesformer.", "classifier.")) else "timesformer." + k): v
                  for k, v in state_dict.items()}  # a bare TimesformerModel has no prefix
    missing = [k for k in ("hidden_size", "patch_size", "num_hidden_layers",
                           "num_attention_heads", "intermediate_size") if k not in hf_config]
    if missing:
        raise UserError(f"HF TimeSformer config.json lacks {', '.join(missing)}; is it the "
                        f"config.json of a TimesformerForVideoClassification?")
    act = hf_config.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        raise UserError(f"HF TimeSformer hidden_act {act!r} is not supported (gelu, gelu_new)")
    if not hf_config.get("qkv_bias", True):
        raise UserError("HF TimeSformer with qkv_bias=False is not supported")
    if abs(hf_config.get("layer_norm_eps", 1e-6) - 1e-6) > 1e-12:
        raise UserError(f"HF TimeSformer layer_norm_eps {hf_config['layer_norm_eps']} is not "
                        f"supported (1e-6)")
    hidden = hf_config["hidden_size"]
    kwargs = dict(
        patch_size=hf_config["patch_size"], hidden_size=hidden,
        num_layers=hf_config["num_hidden_layers"], num_heads=hf_config["num_attention_heads"],
        mlp_ratio=hf_config["intermediate_size"] / hidden,
        attention_type=hf_config.get("attention_type", "divided_space_time"),
        gelu_approximate=act != "gelu", dtype=dtype,
    )
    return _convert(state_dict, 0, "HF TimeSformer", kwargs, hf_config.get("num_frames", 8),
                    num_classes, seed)


def timesformer_from_official(state_dict: Mapping, *, num_heads: int = 12,
                              num_classes: int | None = None, dtype=jnp.float32,
                              seed: int = 0):
    """Official facebookresearch TimeSformer ``.pyth`` checkpoint (the loaded dict, or its
    ``model_state``) → ``(TimeSformer module, variables)``.

    The architecture is read from the weight shapes: width, patch size, depth, MLP ratio,
    frames, and attention type (``temporal_fc`` present → divided; ``time_embed`` present →
    joint; neither → space-only). ``num_heads`` is not recoverable from shapes (12 for the
    released ViT-B models).
    """
    weights = to_numpy(state_dict)
    if "model.cls_token" not in weights:
        weights = {"model." + k: v for k, v in weights.items()}  # saved without the wrapper
    if "model.cls_token" not in weights:
        raise UserError("not an official TimeSformer state dict: no 'model.cls_token'")
    hidden = weights["model.cls_token"].shape[-1]
    depth = 1 + max(int(k.split(".")[2]) for k in weights if k.startswith("model.blocks."))
    if "model.blocks.0.temporal_fc.weight" in weights:
        attention_type = "divided_space_time"
    elif "model.time_embed" in weights:
        attention_type = "joint_space_time"
    else:
        attention_type = "space_only"
    kwargs = dict(
        patch_size=weights["model.patch_embed.proj.weight"].shape[-1], hidden_size=hidden,
        num_layers=depth, num_heads=num_heads,
        mlp_ratio=weights["model.blocks.0.mlp.fc1.weight"].shape[0] / hidden,
        attention_type=attention_type, dtype=dtype,
    )
    frames = weights["model.time_embed"].shape[1] if "model.time_embed" in weights else 8
    return _convert(weights, 1, "official TimeSformer", kwargs, frames, num_classes, seed)
