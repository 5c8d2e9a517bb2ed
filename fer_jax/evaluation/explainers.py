"""Explanation methods named in configs: ``"rollout"``, ``"chefer_relevance(mode='both')"``.

A spec is an ``attribution.METHODS`` name, optionally followed by keyword options in
parentheses (Python literals). Attention methods on divided space-time attention default to
``mode='spatial'``, Du Toit's choice (the spatial attention of a divided block already
carries the temporal mixing before it); give ``mode='both'`` to propagate through both.

Labels name the head fusion of the rollout family, given or not (``HEAD_FUSION_METHODS``):
``rollout`` is 'Rollout-mean', ``rollout(head_fusion='min')`` 'Rollout-min', ``rollout_grad``
'Rollout-Grad-mean'. The default methods for attention models (``DEFAULT_METHODS``) are
Du Toit's comparison with his Rollout, the minimum over heads: "For the standard Rollout
method, the minimum attention head is used because the other 2, namely the maximum or average,
produced noisy outputs." (Sec. 4.1.2). He states no head fusion for Rollout-Grad, nor a
discard ratio for either: Rollout-Grad keeps vit-explain's mean (its ``grad_rollout``), and
nothing is discarded (``discard_ratio=0``).

>>> explainer = parse("rollout_grad(head_fusion='max')")
>>> explainer.label, explainer.options
('Rollout-Grad-max', {'head_fusion': 'max', 'mode': 'spatial'})
>>> maps = explainer(model, variables, x, target)           # [B, *positions]
"""
from __future__ import annotations

import ast
import dataclasses
import re

from fer_jax import attribution
from fer_jax.attribution import attention
from fer_jax.errors import UserError

DISPLAY_NAMES = {
    "saliency": "Saliency", "input_x_gradient": "Input×Gradient",
    "integrated_gradients": "Integrated Gradients", "smoothgrad": "SmoothGrad",
    "smoothgrad_sq": "SmoothGrad²", "vargrad": "VarGrad", "gradient_shap": "GradientSHAP",
    "deeplift": "DeepLIFT", "cam": "CAM",
    "grad_cam": "Grad-CAM", "grad_cam_pp": "Grad-CAM++", "layer_cam": "LayerCAM",
    "eigen_cam": "Eigen-CAM", "hires_cam": "HiResCAM", "xgrad_cam": "XGrad-CAM",
    "eigen_grad_cam": "EigenGrad-CAM", "score_cam": "Score-CAM", "ablation_cam": "Ablation-CAM",
    "full_grad": "FullGrad", "occlusion": "Occlusion", "feature_ablation": "Feature ablation",
    "rise": "RISE", "kernel_shap": "KernelSHAP",
    "layer_attention": "Layer attention", "lrp": "LRP", "rollout": "Rollout",
    "rollout_grad": "Rollout-Grad", "chefer_relevance": "TIBAV", "attn_lrp": "AttnLRP",
}
ATTENTION_METHODS = ("rollout", "rollout_grad", "chefer_relevance")
# Methods with a ``head_fusion`` option: their label always says which (e.g. 'Rollout-min').
HEAD_FUSION_METHODS = ("rollout", "rollout_grad")
# Du Toit's comparison for attention models (his Rollout: the minimum over heads); the CAM
# family of Belharbi et al. and the LRP of Forsman & Singh for convolutional ones.
DEFAULT_METHODS = {"attention": "grad_cam,rollout(head_fusion='min'),rollout_grad,"
                                "chefer_relevance",
                   "convolutional": "grad_cam,grad_cam_pp,layer_cam,lrp"}

_SPEC = re.compile(r"^\s*([a-z_]+)\s*(?:\((.*)\))?\s*$", re.S)


@dataclasses.dataclass(frozen=True)
class Explainer:
    """One configured attribution method: ``(model, variables, x, target) → maps``."""

    name: str            # key of attribution.METHODS
    options: dict        # keyword options passed to the method
    label: str           # display name, e.g. 'TIBAV' or 'Rollout-max (discard_ratio=0.9)'

    def __call__(self, model, variables, x, target=None):
        return attribution.METHODS[self.name](model, variables, x, target, **self.options)

    @property
    def key(self) -> str:
        """File-name-safe identifier, e.g. 'rollout_grad-head_fusion=max' (the defaults
        ``mode='spatial'`` and ``head_fusion='mean'`` left out: 'rollout')."""
        extra = "-".join(f"{k}={v}" for k, v in sorted(self.options.items())
                         if not (k == "mode" and v == "spatial")
                         and not (k == "head_fusion" and v == attention.DEFAULT_HEAD_FUSION))
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
    return Explainer(name, _with_mode(name, options, attention_type), label(name, options))


def label(name: str, options: dict) -> str:
    """Display name of method ``name`` with ``options`` as given: 'Grad-CAM',
    'Grad-CAM (layer=blocks_0)'; methods with a head fusion name it, given or default:
    'Rollout-mean', 'Rollout-mean (mode=both)', 'Rollout-Grad-min (discard_ratio=0.5)'."""
    text, shown = DISPLAY_NAMES[name], dict(options)
    if name in HEAD_FUSION_METHODS:
        text += f"-{shown.pop('head_fusion', attention.DEFAULT_HEAD_FUSION)}"
    if shown:
        text += " (" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"
    return text


def _with_mode(name: str, options: dict, attention_type: str | None) -> dict:
    if name in ATTENTION_METHODS and attention_type == "divided_space_time":
        options = {**options, "mode": options.get("mode", "spatial")}
    return options


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
    # by key: 'rollout' and "rollout(mode='spatial')" differ in label, not in maps or files;
    # by label: results are keyed by it
    keys, labels = [e.key for e in explainers], [e.label for e in explainers]
    duplicates = [e.label for e in explainers
                  if keys.count(e.key) > 1 or labels.count(e.label) > 1]
    if duplicates:
        raise UserError(f"explanation method {duplicates[0]!r} is listed twice")
    if attention_type is None:
        attention = [e.name for e in explainers if e.name in ATTENTION_METHODS]
        if attention:
            raise UserError(f"{attention[0]} needs an attention model (TimeSformer); "
                            f"{type(model).__name__} has no attention maps")
    return explainers
