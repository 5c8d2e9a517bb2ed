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

Rules
-----
For a layer with input ``a``, kernel ``W``, output ``z = z_lin(W, a) + b`` and ``R_z = s_z·z``
(``Wᵀ q`` is the vector-Jacobian product of ``z_lin(W, ·)``, i.e. the layer's transpose):

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

``input_rule`` replaces the rule of the *first layer* (the first ``nn.Conv``/``nn.Dense``
called), whose input is not a ReLU output: ``'w2'`` gives ``R_i = Σ_j w_ij² / (Σ_i' w_i'j²) R_j``
and ``'flat'`` the same with every weight 1 (``R_j`` shared equally by the inputs ``j`` sees;
zero padding is not an input). Neither depends on ``a``, so the first layer's backward returns
``R_a`` itself rather than ``s_a``, and the ordinary backward pass carries it to ``x``. That
assumes the map ``x ↦ a`` before the first layer only moves values (transposes, reshapes, casts,
deterministic dropout: every model of the zoo; ``tcn`` swaps axes, ``early_fusion_cnn`` and
``scn`` stack frames as channels) and that ``x`` feeds nothing else.

BatchNorm
---------
In inference mode BatchNorm is the per-channel affine map ``y = a·scale + shift`` with
``scale = γ/√(var + eps)`` and ``shift = β − mean·scale`` (``γ = 1`` without ``use_scale``,
``β = 0`` without ``use_bias``). When its input is the very array returned by the immediately
preceding ``nn.Conv``/``nn.Dense`` (conv → BN, as in ``ConvUnit``) and it normalises the last
axis, it is *folded*: the rule runs on the fused layer, kernel ``W·scale`` (scaled along the
output channels, the kernel's last axis) applied to the convolution's input, whose output is
BatchNorm's (so the fused bias ``(b − mean)·scale + β`` is implicit in ``z``); the unfused
convolution then receives no signal. Otherwise (ReLU → BN, as in the landmark models) it is an
elementwise layer ``z_lin(scale, a) = a·scale`` with bias ``shift`` and the same rules.
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

import flax.linen as nn
import jax
import jax.numpy as jnp

from fer_jax.attribution.core import Target, Variables, inference_variables, target_logits
from fer_jax.errors import UserError

RULES = ("epsilon", "zplus", "alpha_beta")
INPUT_RULES = ("w2", "flat")
# Added to z⁺ and subtracted from z⁻ in the alpha-beta rules (keeps the sign, avoids 0/0).
AB_STABILISER = 1e-9


def lrp(model: nn.Module, variables: Variables, x: jnp.ndarray, target: Target = None,
        rule: str = "epsilon", *, epsilon: float = 1e-6, alpha: float = 2.0, beta: float = 1.0,
        input_rule: str | None = None) -> jnp.ndarray:
    """Input relevance of each example's target logit, summed over channels: ``x.shape[:-1]``.

    ``x``: the model's input batch (``[B, T, H, W, C]`` or ``[B, T, L, 2]``); ``target``: None
    (predicted class), an int or an int array ``[B]``; ``rule``: 'epsilon', 'zplus' or
    'alpha_beta' for every layer; ``epsilon``: the ε rule's absolute stabiliser;
    ``alpha``/``beta``: the α-β rule's weights (``α − β = 1``); ``input_rule``: None (the
    ``rule`` for the first layer too), 'w2' or 'flat' for the first ``nn.Conv``/``nn.Dense``.
    See the module docstring for the rules and assumptions.
    """
    return lrp_relevance(model, variables, x, target, rule, epsilon=epsilon, alpha=alpha,
                         beta=beta, input_rule=input_rule).sum(axis=-1)


def lrp_relevance(model: nn.Module, variables: Variables, x: jnp.ndarray,
                  target: Target = None, rule: str = "epsilon", *, epsilon: float = 1e-6,
                  alpha: float = 2.0, beta: float = 1.0,
                  input_rule: str | None = None) -> jnp.ndarray:
    """Input relevance per channel, the shape of ``x``; arguments as in ``lrp``.

    For a conserving propagation, ``relevance.sum()`` over one example's axes is its target
    logit. One forward and one backward pass for the whole batch.
    """
    if rule == "zplus":
        alpha, beta = 1.0, 0.0
    _check_arguments(rule, epsilon, alpha, beta, input_rule)
    variables = inference_variables(variables)
    x = jnp.asarray(x)

    def score(x):
        propagation = _Propagation(rule, epsilon, alpha, beta, input_rule)
        with nn.intercept_methods(propagation.intercept):
            logits = model.apply(variables, x, train=False)
        if input_rule is not None and propagation.first:
            raise UserError(f"input_rule={input_rule!r} needs an nn.Conv or nn.Dense layer, "
                            f"and {type(model).__name__} calls none")
        return target_logits(logits, target).sum()

    signal = jax.grad(score)(x)
    # With an input rule the first layer returns relevance itself, carried back to x unchanged.
    return signal if input_rule is not None else x * signal


def _check_arguments(rule: str, epsilon: float, alpha: float, beta: float,
                     input_rule: str | None) -> None:
    if rule not in RULES:
        raise UserError(f"unknown LRP rule {rule!r}; choose one of {', '.join(RULES)}")
    if input_rule is not None and input_rule not in INPUT_RULES:
        raise UserError(f"unknown LRP input_rule {input_rule!r}; choose None (the same rule as "
                        f"every layer) or one of {', '.join(INPUT_RULES)}")
    if not epsilon > 0:
        raise UserError(f"LRP epsilon must be positive, got {epsilon}; use a tiny value such "
                        "as 1e-9 for LRP-0")
    if rule == "alpha_beta" and (abs(alpha - beta - 1.0) > 1e-6 or beta < 0):
        raise UserError(f"the alpha_beta rule needs alpha - beta = 1 and beta >= 0, got "
                        f"alpha={alpha}, beta={beta}; e.g. alpha=2, beta=1 or alpha=1, beta=0")


def _transpose(linear, w, a, q):
    """``Wᵀ q``: the vector-Jacobian product of the linear map ``z_lin(w, ·)`` at ``a``."""
    return jax.vjp(lambda v: linear(w, v), a)[1](q)[0]


class _Propagation:
    """Interceptor state for one forward pass: the rule, which layer is first and the last
    ``nn.Conv``/``nn.Dense`` output (for BatchNorm folding)."""

    def __init__(self, rule: str, epsilon: float, alpha: float, beta: float,
                 input_rule: str | None):
        self.rule, self.epsilon, self.alpha, self.beta = rule, epsilon, alpha, beta
        self.input_rule = input_rule
        self.first = True  # no nn.Conv / nn.Dense called yet
        self.last = None  # (output, linear, kernel, input, is_input_layer) of the last one

    def intercept(self, next_fun, args, kwargs, context):
        module = context.module
        if (context.method_name != "__call__"
                or not isinstance(module, (nn.Conv, nn.Dense, nn.BatchNorm))):
            return next_fun(*args, **kwargs)
        z = next_fun(*args, **kwargs)
        a = args[0] if args else kwargs["x" if isinstance(module, nn.BatchNorm) else "inputs"]
        if isinstance(module, nn.BatchNorm):
            return self._batch_norm(module, a, z, args, kwargs)
        linear = self._linear_map(module)
        kernel = module.variables["params"]["kernel"]
        is_input = self.input_rule is not None and self.first
        self.first = False
        out = self._rule_layer(linear, kernel, a, z, is_input)
        self.last = (out, linear, kernel, a, is_input)
        return out

    @staticmethod
    def _linear_map(module: nn.Module):
        """``z_lin(w, a)``: the module's own computation without bias, on kernel ``w``.

        Only the backward pass applies it, once the forward pass and its interception are
        over, so the unbound clone is not intercepted.
        """
        clone = module.clone(parent=None, use_bias=False)
        return lambda w, a: clone.apply({"params": {"kernel": w}}, a)

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
        axes = module.axis if isinstance(module.axis, tuple | list) else (module.axis,)
        axes = tuple(sorted(axis % a.ndim for axis in axes))
        last, self.last = self.last, None
        if last is not None and a is last[0] and axes == (a.ndim - 1,):
            _, linear, kernel, conv_input, is_input = last
            return self._rule_layer(linear, kernel * scale.astype(kernel.dtype), conv_input, z,
                                    is_input)
        shape = [a.shape[i] if i in axes else 1 for i in range(a.ndim)]
        return self._rule_layer(lambda w, v: v * w.reshape(shape).astype(v.dtype), scale, a,
                                z, False)

    def _rule_layer(self, linear, w, a, z, is_input: bool):
        """``z`` unchanged, with a backward mapping ``s_z`` to ``s_a`` by the rule (to ``R_a``
        by the input rule when ``is_input``); ``w`` and ``z`` get zero cotangents."""

        @jax.custom_vjp
        def layer(w, a, z):
            return z

        def forward(w, a, z):
            return z, (w, a, z)

        def backward(residuals, s_z):
            w, a, z = residuals
            relevance = s_z * z
            if is_input:
                return None, self._input_relevance(linear, w, a, relevance), None
            if self.rule == "epsilon":
                sign = jnp.where(z >= 0, 1, -1).astype(z.dtype)
                return None, _transpose(linear, w, a, relevance / (z + self.epsilon * sign)), None
            return None, self._alpha_beta(linear, w, a, relevance), None

        layer.defvjp(forward, backward)
        return layer(w, a, z)

    def _alpha_beta(self, linear, w, a, relevance):
        """``s_a`` of the α-β rule (z⁺ when β = 0); shapes of ``a`` and of ``relevance`` = z.

        When every input is non-negative (ReLU outputs: every layer but the first, in most
        networks) the terms of ``a⁻`` vanish; ``lax.cond`` then skips their convolutions (under
        ``vmap`` both branches run). ``s_a`` is 0 where ``a = 0``, whose relevance is 0.
        """
        return jax.lax.cond(jnp.all(a >= 0),
                            lambda *args: self._alpha_beta_terms(linear, *args, signed=False),
                            lambda *args: self._alpha_beta_terms(linear, *args, signed=True),
                            w, a, relevance)

    def _alpha_beta_terms(self, linear, w, a, relevance, signed: bool):
        """The α-β rule's ``s_a``; ``signed=False`` assumes ``a ≥ 0`` (drops the ``a⁻`` terms)."""
        w_pos, w_neg = jnp.maximum(w, 0), jnp.minimum(w, 0)
        a_pos, a_neg = jnp.maximum(a, 0), jnp.minimum(a, 0)
        z_pos = linear(w_pos, a_pos) + (linear(w_neg, a_neg) if signed else 0)
        q_pos = relevance / (z_pos + AB_STABILISER)
        on_pos = self.alpha * _transpose(linear, w_pos, a, q_pos)  # α c1⁺
        on_neg = self.alpha * _transpose(linear, w_neg, a, q_pos) if signed else 0.0  # α c2⁺
        if self.beta:
            z_neg = linear(w_neg, a_pos) + (linear(w_pos, a_neg) if signed else 0)
            q_neg = relevance / (z_neg - AB_STABILISER)
            on_pos = on_pos - self.beta * _transpose(linear, w_neg, a, q_neg)  # − β c1⁻
            if signed:
                on_neg = on_neg - self.beta * _transpose(linear, w_pos, a, q_neg)  # − β c2⁻
        return jnp.where(a > 0, on_pos, jnp.where(a < 0, on_neg, 0.0)).astype(a.dtype)

    def _input_relevance(self, linear, w, a, relevance):
        """``R_a`` of the first layer by the w² or flat rule; shape of ``a``."""
        w = w * w if self.input_rule == "w2" else jnp.ones_like(w)
        ones = jnp.ones_like(a)
        total = linear(w, ones)
        return _transpose(linear, w, ones, jnp.where(total > 0, relevance / total, 0))
