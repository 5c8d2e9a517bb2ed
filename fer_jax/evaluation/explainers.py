"""Explanation methods named in configs: ``"rollout"``, ``"chefer_relevance(mode='both')"``.

A spec is an ``attribution.METHODS`` name, optionally followed by keyword options in
parentheses (Python literals). Attention methods on divided space-time attention default to
``mode='spatial'``, Du Toit's choice (the spatial attention of a divided block already
carries the temporal mixing before it); give ``mode='both'`` to propagate through both.

>>> explainer = parse("rollout_grad(head_fusion='max')")
>>> explainer.label, explainer.options
('Rollout-Grad (head_fusion=max)', {'head_fusion': 'max', 'mode': 'spatial'})
>>> maps = explainer(model, variables, x, target)           # [B, *positions]
"""
from __future__ import annotations

import ast
import dataclasses
import re

from fer_jax import attribution
from fer_jax.errors import UserError

DISPLAY_NAMES = {
    "saliency": "Saliency", "input_x_gradient": "Input×Gradient",
    "integrated_gradients": "Integrated Gradients", "smoothgrad": "SmoothGrad", "cam": "CAM",
    "grad_cam": "Grad-CAM", "grad_cam_pp": "Grad-CAM++", "layer_cam": "LayerCAM",
    "eigen_cam": "Eigen-CAM",
    "layer_attention": "Layer attention", "lrp": "LRP", "rollout": "Rollout",
    "rollout_grad": "Rollout-Grad", "chefer_relevance": "TIBAV",
}
ATTENTION_METHODS = ("rollout", "rollout_grad", "chefer_relevance")
# Du Toit's comparison for attention models; the CAM family of Belharbi et al. and the LRP of
# Forsman & Singh for convolutional ones.
DEFAULT_METHODS = {"attention": "grad_cam,rollout,rollout_grad,chefer_relevance",
                   "convolutional": "grad_cam,grad_cam_pp,layer_cam,lrp"}

_SPEC = re.compile(r"^\s*([a-z_]+)\s*(?:\((.*)\))?\s*$", re.S)


@dataclasses.dataclass(frozen=True)
class Explainer:
    """One configured attribution method: ``(model, variables, x, target) → maps``."""

    name: str            # key of attribution.METHODS
    options: dict        # keyword options passed to the method
    label: str           # display name, e.g. 'TIBAV' or 'Rollout (head_fusion=max)'

    def __call__(self, model, variables, x, target=None):
        return attribution.METHODS[self.name](model, variables, x, target, **self.options)

    @property
    def key(self) -> str:
        """File-name-safe identifier, e.g. 'rollout_grad-head_fusion=max'."""
        extra = "-".join(f"{k}={v}" for k, v in sorted(self.options.items())
                         if not (k == "mode" and v == "spatial"))
        return re.sub(r"[^A-Za-z0-9_.=-]", "", self.name + (f"-{extra}" if extra else ""))


def _options(name: str, text: str) -> dict:
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        # one call f(...) (not "a), g(b" → a tuple, nor "a)(b" → a call of a call)
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.args:
            raise ValueError("positional options")
        names = [k.arg for k in call.keywords]
        if None in names or len(set(names)) != len(names):  # **mapping, repeated keyword
            raise ValueError("not distinct keywords")
        return {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError) as e:
        raise UserError(f"cannot read the options of explanation method {name!r} ({text!r}): "
                        f"write keyword=literal pairs, e.g. {name}(mode='both')") from e


def parse(spec: str, attention_type: str | None = "divided_space_time") -> Explainer:
    """The ``Explainer`` of one spec; ``attention_type``: the model's (None: not a
    transformer), used for the divided-attention default ``mode='spatial'``."""
    match = _SPEC.match(spec)
    if not match or match.group(1) not in attribution.METHODS:
        raise UserError(f"unknown explanation method {spec.strip()!r}; use one of "
                        f"{', '.join(attribution.METHODS)}, optionally with options, "
                        f"e.g. rollout(head_fusion='max')")
    name = match.group(1)
    options = _options(name, match.group(2)) if match.group(2) else {}
    label = DISPLAY_NAMES[name]
    if options:
        label += " (" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")"
    if name in ATTENTION_METHODS and attention_type == "divided_space_time":
        options.setdefault("mode", "spatial")
    return Explainer(name, options, label)


def parse_all(specs: str, model) -> list[Explainer]:
    """Comma-separated specs (commas inside parentheses belong to the options); ``''`` → the
    default methods for ``model`` (``DEFAULT_METHODS``). Duplicate labels are refused."""
    attention_type = getattr(model, "attention_type", None)
    if not specs.strip():
        specs = DEFAULT_METHODS["attention" if attention_type else "convolutional"]
    parts, depth, current = [], 0, ""
    for char in specs:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    explainers = [parse(p, attention_type) for p in parts if p.strip()]
    # by key: 'rollout' and "rollout(mode='spatial')" differ in label, not in maps or files
    keys = [e.key for e in explainers]
    duplicates = [e.label for e in explainers if keys.count(e.key) > 1]
    if duplicates:
        raise UserError(f"explanation method {duplicates[0]!r} is listed twice")
    if attention_type is None:
        attention = [e.name for e in explainers if e.name in ATTENTION_METHODS]
        if attention:
            raise UserError(f"{attention[0]} needs an attention model (TimeSformer); "
                            f"{type(model).__name__} has no attention maps")
    return explainers
