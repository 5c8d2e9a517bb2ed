"""Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019) for ReLU networks
built from ``nn.Conv``, ``nn.Dense`` and ``nn.BatchNorm``: every CNN of the zoo, unchanged.

Formulation
-----------
LRP sends *relevance* ``R`` from the target logit down to the input. Propagated here is the
relevance per unit of activation, the *signal* ``s(v) = R(v) / v``, so that ``R(v) = v · s(v)``.
Written this way, LRP-0 (``R_a = a ⊙ Pᵀ(R_y / y)``) through any bias-free linear map
``y = P a`` is ``s_a = Pᵀ s_y``, the ordinary vector-Jacobian product, and through a ReLU
``R`` passes unchanged, i.e. ``s_z = s_a · relu(z) / z = relu'(z) · s_a``, again the gradient.
So the ordinary backward pass of JAX already propagates relevance *exactly* through ReLU,
max-pooling (winner takes all), average pooling, means and pooling einsums, residual additions,
concatenations, slicing, padding, reshapes and transposes. Only the parameterised layers get
rules: ``flax.linen.intercept_methods`` intercepts ``__call__`` of every ``nn.Conv``,
``nn.Dense`` and ``nn.BatchNorm``, lets it compute its output ``z`` normally, and returns ``z``
through a ``jax.custom_vjp`` whose backward maps the incoming signal ``s_z`` to ``s_a`` by the
rule (the layer's parameters are explicit arguments with zero cotangents). The signal starts at
the logits as the one-hot of the target (``R`` = the target logit), and the input relevance is
``R_x = x ⊙ s_x``: one forward and one backward pass for the whole batch, pure, and usable under
``jax.jit`` and ``jax.vmap``.

Rules and composites
--------------------
Which rule a layer gets is a *composite* (``attribution/lrp_composites.py``, after Zennit's
``zennit.composites``): ordered pairs of a selector (layer type, ``'first'`` or a glob over
module paths) and a rule (``attribution/lrp_rules.py``, after ``zennit.rules``: ε, z⁺, αβ, γ,
flat, w², z^B, pass), the first match winning; a layer no selector matches gets LRP-0 (the
ordinary backward pass). ``lrp(composite='epsilon_plus_flat')`` takes a Zennit preset,
``composite={'layer4_*': 'gamma', 'conv': 'zplus', 'dense': 'epsilon'}`` a mapping. The zoo's
CNNs name their default composite (``lrp_composite``); other models default to LRP-ε.

The earlier arguments keep their meaning: ``rule`` for every ``nn.Conv``, ``nn.Dense`` and
unfolded ``nn.BatchNorm``, ``input_rule`` for the first layer. For a layer with input ``a``,
kernel ``W``, output ``z = z_lin(W, a) + b`` and ``R_z = s_z·z`` (``Wᵀ q`` is the
vector-Jacobian product of ``z_lin(W, ·)``, i.e. the layer's transpose):

* ``'epsilon'``: ``s_a = Wᵀ (R_z / (z + ε·sign(z)))`` with ``sign(0) = +1``. ``epsilon`` is
  absolute, in the units of the pre-activations; the default 1e-6 (as Zennit's) only stabilises,
  so the rule is LRP-0, which for ReLU networks equals gradient × input. Relevance is conserved
  (``Σ R_a = R_z``) up to what the bias and ε absorb (``R_z · (b + ε·sign(z)) / (z + ε·sign(z))``
  per unit); raise ``epsilon`` to suppress weak, noisy contributions.
* ``'alpha_beta'`` (``α − β = 1``, ``β ≥ 0``; biases ignored): with ``W⁺ = max(W, 0)``,
  ``W⁻ = min(W, 0)``, ``a⁺ = max(a, 0)``, ``a⁻ = min(a, 0)``,
  ``z⁺ = z_lin(W⁺, a⁺) + z_lin(W⁻, a⁻) ≥ 0`` and ``z⁻ = z_lin(W⁻, a⁺) + z_lin(W⁺, a⁻) ≤ 0``
  (stabilised by ±1e-9), ``c1⁺ = W⁺ᵀ(R_z/z⁺)``, ``c2⁺ = W⁻ᵀ(R_z/z⁺)``, ``c1⁻ = W⁻ᵀ(R_z/z⁻)``,
  ``c2⁻ = W⁺ᵀ(R_z/z⁻)``:
  ``R_a = α(a⁺c1⁺ + a⁻c2⁺) − β(a⁺c1⁻ + a⁻c2⁻)``, i.e.
  ``s_a = α c1⁺ − β c1⁻`` where ``a > 0`` and ``α c2⁺ − β c2⁻`` elsewhere. Conserving
  (``Σ R_a = R_z``) whenever ``z⁺ > 0`` and ``z⁻ < 0``.
* ``'zplus'``: ``'alpha_beta'`` with ``α = 1, β = 0``; Montavon's z⁺ rule for non-negative
  inputs, and for any input sign it keeps relevance non-negative where ``R_z ≥ 0``.

(Zennit's z⁺, αβ and w², the rules of the presets and of rule names in a composite, put the
bias into the denominators: ``lrp_rules``' ``ignore_bias=True`` gives the versions above.)

``input_rule`` replaces the rule of the *first layer* (the first ``nn.Conv``/``nn.Dense``
called), whose input is not a ReLU output: ``'w2'`` gives ``R_i = Σ_j w_ij² / (Σ_i' w_i'j²) R_j``
and ``'flat'`` the same with every weight 1 (``R_j`` shared equally by the inputs ``j`` sees;
zero padding is not an input). Neither depends on ``a``, so the first layer's backward returns
``R_a`` itself rather than ``s_a``, and the ordinary backward pass carries it to ``x``. That
assumes the map ``x ↦ a`` before the first layer only moves values (transposes, reshapes, casts,
deterministic dropout: every model of the zoo; ``tcn`` swaps axes, ``early_fusion_cnn`` and
``scn`` stack frames as channels) and that ``x`` feeds nothing else. The same holds for every
input rule of a composite (flat, w², z^B), which is why they may explain the first layer only.

BatchNorm
---------
In inference mode BatchNorm is the per-channel affine map ``y = a·scale + shift`` with
``scale = γ/√(var + eps)`` and ``shift = β − mean·scale`` (``γ = 1`` without ``use_scale``,
``β = 0`` without ``use_bias``). When its input is the very array returned by the immediately
preceding ``nn.Conv``/``nn.Dense`` (conv → BN, as in ``ConvUnit``) and it normalises the last
axis, it is *folded*: the rule runs on the fused layer, kernel ``W·scale`` (scaled along the
output channels, the kernel's last axis) applied to the convolution's input, whose output is
BatchNorm's, with the fused bias ``(b − mean)·scale + β`` (the rules that use a bias see
it); the unfused convolution then receives no signal. Otherwise (ReLU → BN, as in the
landmark models) it is an elementwise layer ``z_lin(scale, a) = a·scale`` with bias
``shift``.
A folded BatchNorm takes the rule its layer's selector gives (Zennit's canonizer merges it into
the layer before rules are assigned); an unfolded one is selected as ``'batch_norm'``.
BatchNorm in training mode (batch statistics) raises ``UserError``.

Assumptions and limits
----------------------
Activations are ReLUs (or max-pools). Other nonlinearities (GELU, softmax attention, sigmoid)
and other linear layers (``nn.DenseGeneral``, ``nn.ConvTranspose``, ``nn.LayerNorm``) receive
their ordinary gradient, which for a linear layer is LRP-0 and for a nonlinear one has no LRP
meaning (TimeSformer runs but is not explained by LRP proper). Models that average *logits*
(``vgg16_3d``'s mean over frames, ``i3d``'s mean over positions) give each frame or position
the relevance of its own score, negative where that score is, whatever the rule; so do residual
additions whose branches have mixed signs. The returned relevance has zero gradient with
respect to the variables.

Shapes: ``x`` is the model's input (``[B, T, H, W, C]`` video, ``[B, T, 68, 2]`` landmarks);
``lrp`` returns the relevance summed over the channel (last) axis, ``x.shape[:-1]``;
``lrp_relevance`` returns it per channel, ``x.shape``.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fer_jax.attribution.core import Target, Variables, inference_variables, target_logits
from fer_jax.attribution.lrp_composites import (LEGACY_INPUT_RULES, LEGACY_RULES,
                                                LEGACY_STABILISER, Composite, path_matches,
                                                resolve)
from fer_jax.attribution.lrp_rules import Layer, Rule
from fer_jax.errors import UserError

RULES = LEGACY_RULES
INPUT_RULES = LEGACY_INPUT_RULES
# Added to z⁺ and subtracted from z⁻ in the alpha-beta rules of rule=… (avoids 0/0).
AB_STABILISER = LEGACY_STABILISER


def lrp(model: nn.Module, variables: Variables, x: jnp.ndarray, target: Target = None,
        rule: str | None = None, *, epsilon: float = 1e-6, alpha: float = 2.0,
        beta: float = 1.0, input_rule: str | None = None, composite: Any = None,
        gamma: float = 0.25, low: Any = None, high: Any = None) -> jnp.ndarray:
    """Input relevance of each example's target logit, summed over channels: ``x.shape[:-1]``.

    ``x``: the model's input batch (``[B, T, H, W, C]`` or ``[B, T, L, 2]``); ``target``: None
    (predicted class), an int or an int array ``[B]``; ``rule``: 'epsilon', 'zplus' or
    'alpha_beta' for every layer; ``epsilon``: the ε rule's absolute stabiliser;
    ``alpha``/``beta``: the α-β rule's weights (``α − β = 1``); ``input_rule``: None (the
    ``rule`` for the first layer too), 'w2' or 'flat' for the first ``nn.Conv``/``nn.Dense``.
    ``composite`` instead of ``rule``/``input_rule``: a preset name ('epsilon_plus',
    'epsilon_plus_flat', …), a dict ``{layer type or path glob: rule}`` or a ``Composite``
    (``attribution/lrp_composites.py``); ``gamma``, ``low``, ``high``: the γ and z^B rules'
    parameters. With none of ``rule``, ``input_rule``, ``composite``: the model's
    ``lrp_composite`` (the zoo's CNNs: ``epsilon_plus_flat`` or a variant), else
    ``rule='epsilon'``. See the module docstring for the rules and assumptions.
    """
    return lrp_relevance(model, variables, x, target, rule, epsilon=epsilon, alpha=alpha,
                         beta=beta, input_rule=input_rule, composite=composite, gamma=gamma,
                         low=low, high=high).sum(axis=-1)


def lrp_relevance(model: nn.Module, variables: Variables, x: jnp.ndarray,
                  target: Target = None, rule: str | None = None, *, epsilon: float = 1e-6,
                  alpha: float = 2.0, beta: float = 1.0, input_rule: str | None = None,
                  composite: Any = None, gamma: float = 0.25, low: Any = None,
                  high: Any = None) -> jnp.ndarray:
    """Input relevance per channel, the shape of ``x``; arguments as in ``lrp``.

    For a conserving propagation, ``relevance.sum()`` over one example's axes is its target
    logit. One forward and one backward pass for the whole batch.
    """
    composite = resolve(model, composite, rule, input_rule, epsilon=epsilon, alpha=alpha,
                        beta=beta, gamma=gamma, low=low, high=high)
    variables = inference_variables(variables)
    x = jnp.asarray(x)
    returns_relevance = []

    def score(x):
        propagation = _Propagation(composite)
        with nn.intercept_methods(propagation.intercept):
            logits = model.apply(variables, x, train=False)
        propagation.check(model)
        returns_relevance.append(propagation.input_relevance)
        return target_logits(logits, target).sum()

    signal = jax.grad(score)(x)
    # An input rule on the first layer returns relevance itself, carried back to x unchanged.
    return signal if returns_relevance[-1] else x * signal


def lrp_layer_rules(model: nn.Module, variables: Variables, x: jnp.ndarray, *,
                    rule: str | None = None, input_rule: str | None = None,
                    composite: Any = None, **options) -> dict[str, Rule | None]:
    """``{module path: rule}`` for every ``nn.Conv``, ``nn.Dense`` and unfolded
    ``nn.BatchNorm`` that ``lrp`` with these arguments explains, in call order (None: no
    selector matches, LRP-0). Folded BatchNorms are left out: they take their layer's rule.
    Shapes only, nothing is computed: ``variables`` may be ``jax.ShapeDtypeStruct`` leaves
    (``jax.eval_shape(model.init, …)``)."""
    composite = resolve(model, composite, rule, input_rule, **options)
    propagation = _Propagation(composite)

    def apply(variables, x):
        with nn.intercept_methods(propagation.intercept):
            model.apply(variables, x, train=False)
        propagation.check(model)

    jax.eval_shape(apply, inference_variables(variables), x)
    return dict(propagation.assigned)


class _Propagation:
    """Interceptor state for one forward pass: the composite, which layer is first, the last
    ``nn.Conv``/``nn.Dense`` called (for BatchNorm folding) and the rules assigned."""

    def __init__(self, composite: Composite):
        self.composite = composite
        self.first = True  # no nn.Conv / nn.Dense called yet
        self.last = None  # (output, linear, kernel, bias, input, rule) of the last one
        self.assigned: dict[str, Rule | None] = {}
        self.input_relevance = False  # the first layer's rule returns relevance

    def intercept(self, next_fun, args, kwargs, context):
        module = context.module
        if (context.method_name != "__call__"
                or not isinstance(module, (nn.Conv, nn.Dense, nn.BatchNorm))):
            return next_fun(*args, **kwargs)
        z = next_fun(*args, **kwargs)
        a = args[0] if args else kwargs["x" if isinstance(module, nn.BatchNorm) else "inputs"]
        if isinstance(module, nn.BatchNorm):
            return self._batch_norm(module, a, z, args, kwargs)
        first, self.first = self.first, False
        rule = self._rule(module, first)
        linear = self._linear_map(module)
        params = module.variables["params"]
        kernel, bias = params["kernel"], params.get("bias")
        out = z if rule is None else self._rule_layer(rule, linear, kernel, bias, a, z)
        self.last = (out, linear, kernel, bias, a, rule)
        return out

    def _rule(self, module: nn.Module, first: bool) -> Rule | None:
        """The composite's rule for ``module``; input rules only on the first layer."""
        rule = self.composite.rule_for(module, first)
        path = "/".join(module.path)
        if rule is not None and rule.returns_relevance:
            if not first:
                raise UserError(f"LRP rule {type(rule).__name__} returns relevance, not "
                                f"relevance per activation, so it can only explain the first "
                                f"layer ('first'), not {path!r}")
            self.input_relevance = True
        self.assigned[path] = rule
        return rule

    def check(self, model: nn.Module) -> None:
        """Raises when a path glob of the composite matched no layer of ``model``, or when
        it has a first-layer rule and ``model`` calls no ``nn.Conv``/``nn.Dense``."""
        if self.composite.has_first and self.first:
            raise UserError(f"the LRP composite has a rule for the first nn.Conv or nn.Dense "
                            f"layer, and {type(model).__name__} calls none")
        for pattern in self.composite.patterns:
            if not any(path_matches(pattern, path) for path in self.assigned):
                raise UserError(f"LRP composite pattern {pattern!r} matches no nn.Conv, "
                                f"nn.Dense or unfolded nn.BatchNorm of {type(model).__name__} "
                                f"(a BatchNorm folded into its layer takes that layer's "
                                f"rule); attribution.lrp_layer_rules lists the layers")

    @staticmethod
    def _linear_map(module: nn.Module):
        """``z_lin(w, a)``: the module's own computation without bias, on kernel ``w``.

        Only the backward pass applies it, once the forward pass and its interception are
        over, so the unbound clone is not intercepted. Jitted, so that the rules' several
        calls (positive and negative parts, transposes) trace the module once per shape.
        """
        clone = module.clone(parent=None, use_bias=False)
        return jax.jit(lambda w, a: clone.apply({"params": {"kernel": w}}, a))

    def _batch_norm(self, module: nn.BatchNorm, a, z, args, kwargs):
        running = nn.merge_param("use_running_average", module.use_running_average,
                                 kwargs.get("use_running_average",
                                            args[1] if len(args) > 1 else None))
        if not running:
            raise UserError(f"LRP needs BatchNorm {'/'.join(module.path)!r} in inference mode "
                            "(use_running_average=True); apply the model with train=False")
        stats = module.variables["batch_stats"]
        scale = jax.lax.rsqrt(stats["var"] + module.epsilon)
        if module.use_scale:
            scale = scale * module.variables["params"]["scale"]
        shift = -stats["mean"] * scale
        if module.use_bias:
            shift = shift + module.variables["params"]["bias"]
        axes = module.axis if isinstance(module.axis, tuple | list) else (module.axis,)
        axes = tuple(sorted(axis % a.ndim for axis in axes))
        last, self.last = self.last, None
        if last is not None and a is last[0] and axes == (a.ndim - 1,):
            _, linear, kernel, bias, conv_input, rule = last
            if rule is None:
                return z
            # Folded: kernel W·scale, bias (b − mean)·scale + β on the convolution's input.
            fused_bias = shift if bias is None else bias * scale + shift
            return self._rule_layer(rule, linear, kernel * scale.astype(kernel.dtype),
                                    fused_bias, conv_input, z)
        rule = self._rule(module, False)
        if rule is None:
            return z
        shape = [a.shape[i] if i in axes else 1 for i in range(a.ndim)]
        return self._rule_layer(rule, lambda w, v: v * w.reshape(shape).astype(v.dtype), scale,
                                shift.reshape(shape), a, z)

    @staticmethod
    def _rule_layer(rule: Rule, linear, w, bias, a, z):
        """``z`` unchanged, with a backward mapping ``s_z`` to ``s_a`` by ``rule`` (to
        ``R_a`` by an input rule); ``w``, ``bias`` and ``z`` get zero cotangents."""

        @jax.custom_vjp
        def layer(w, bias, a, z):
            return z

        def forward(w, bias, a, z):
            return z, (w, bias, a, z)

        def backward(residuals, s_z):
            w, bias, a, z = residuals
            if bias is not None:
                bias = bias.astype(z.dtype)
            relevance = rule.backward(Layer(linear, w, bias, a, z), s_z * z)
            return None, None, relevance.astype(a.dtype), None

        layer.defvjp(forward, backward)
        return layer(w, bias, a, z)

