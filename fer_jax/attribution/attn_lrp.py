"""AttnLRP (Achtibat et al., ICML 2024, "AttnLRP: Attention-Aware Layer-Wise Relevance
Propagation for Transformers") for the TimeSformer of ``models.timesformer``: divided, joint and
space-only attention.

Formulation
-----------
As in ``attribution.lrp``, relevance travels as a *signal* ``s(v) = R(v) / v`` so that
``R(v) = v · s(v)``, and the backward pass of JAX carries it: the input relevance is
``R_x = x ⊙ s_x`` from one forward and one backward pass, the signal starting at the logits as
the one-hot of the target (the relevance there is the target logit). This is the
"gradient × input" form of the authors' library ``lxt`` (LRP-eXplains-Transformers 2.1,
``lxt.efficient``): the ordinary backward pass is already LRP-0 through every linear map
(``nn.Dense``, ``nn.Conv``, sums, means, reshapes, the cls token's replication over frames and
its average back), and only the nonlinear operations get rules, each a change of the backward
pass that leaves the forward values bit for bit as they are:

* **GELU** (``timesformer.Mlp.activation``): the identity rule (paper Eq. 9), ``R_h = R_a``
  elementwise, i.e. ``s_h = s_a · gelu(h) / h`` (0 where ``h = 0``, where ``gelu(0) = 0``).
  lxt: ``identity_rule_implicit``.
* **LayerNorm** (every ``nn.LayerNorm``): ``y = (x − μ(x)) · γ / σ(x) + β`` with ``σ`` taken as
  a constant (the identity rule on the division by the standard deviation, paper Prop. 3.4)
  and the centring ``x − μ(x)``, a linear map, by LRP-0; ``γ`` is a weight, ``β`` a bias.
  lxt: ``layer_norm_forward`` (``x − mean`` over ``stop_gradient(std)``).
* **Softmax**: the paper's rule (Prop. 3.1), the Taylor decomposition at ``l`` itself with a
  bias term, ``R_l = l ⊙ (R_A − A ⊙ Σ_j R_A,j)`` per row (``A = softmax(l)``), is exactly
  gradient × input, so the ordinary backward pass applies it. It is the one rule that is not
  conservative: per row the bias term absorbs ``Σ_j R_A,j (1 − l_j + Σ_i A_i l_i)``.
* **The products** ``l = Q Kᵀ / √d`` and ``O = A V``: the uniform rule (paper Prop. 3.3: LRP-ε
  on each factor with the other fixed, ε → 0, and the relevance split 50/50), conservative by
  Euler's theorem for bilinear maps. In signal form each factor's signal is half the ordinary
  vector-Jacobian product; the half that reaches ``A`` passes the softmax (linear in the
  signal), so ``Q`` and ``K`` get ``¼`` of their gradient and ``V`` ``½`` — lxt's
  ``divide_gradient`` on query, key and value. Here the factors scale the signal at the output
  of each attention's fused ``qkv`` projection (its thirds are Q, K, V), so explicit and fused
  attention implementations give the same relevance.

``attention_rule='cp'`` replaces the last two by CP-LRP (Ali et al., ICML 2022, "XAI for
Transformers: Better Explanations through Conservative Propagation"; lxt's choice inside the
attention of torchvision's ViT): the attention probabilities are constants, Q and K get no
signal and V all of it, and every rule is conservative.

Linear layers get LRP-0, the ε-rule's limit ε → 0, as in lxt's gradient × input mode (the
paper's ε only stabilises). So the relevance is conserved up to the *sources*: every bias
(``nn.Dense``, ``nn.Conv``, LayerNorm's ``β``) and additive embedding (cls token, position and
time embeddings) takes ``Σ b ⊙ s`` of the signal it meets, and each softmax (``'attnlrp'``)
what its bias term absorbs. Exactly, up to rounding::

    target logit = Σ R_x + Σ_sources b ⊙ s_b + Σ_softmax (R_V − R_Q − R_K)

where ``R_Q, R_K, R_V`` are the totals of the relevance of each attention's Q, K and V (the
uniform rule makes ``R_V = R_A``, ``R_Q + R_K = R_l``). ``tests/test_attn_lrp.py`` checks this
identity, and ``Σ R_x = target logit`` with CP-LRP on a model whose biases and embeddings are 0.

Divided space-time attention needs nothing of its own: temporal attention (sequences over the
T frames of each patch, no cls token) and spatial attention (per frame over [cls, N patches],
the cls token replicated per frame and its T outputs averaged) are both
``timesformer.Attention``; the replication and the average are linear, so the backward pass
conserves through them.

The modules are recognised by what they declare, not by class (this package imports no
model code): a module's ``attribution_elementwise`` attribute names its elementwise
nonlinearity's method (``timesformer.Mlp``: ``'activation'``), an attention module's
``attribution_qkv`` its fused ``nn.Dense`` projection (``timesformer.Attention``: ``'qkv'``).
Only the operations named above get rules: a model using other nonlinearities in its
transformer, or attention modules that do not declare their projection, gets plain gradients
there, which is not LRP. A model with no declared attention projection is refused (use
``lrp`` for CNNs). The rules apply inside ``AttnLRPRules`` by method interception
(``flax.linen.intercept_methods``), so any gradient taken of a ``model.apply`` inside it is the
AttnLRP signal (for latent relevance of any layer: ``attn_lrp_relevance(layers=...)``).

Shapes: ``x [B, T, H, W, C]``; ``attn_lrp`` returns the input relevance summed over channels
``[B, T, H, W]`` (so ``Σ`` over an example is conserved), or with ``level='tokens'`` the
relevance of the patch tokens entering the first block (``model.embed``'s output, position
and time embeddings included, summed over the hidden axis) ``[B, T, h, w]``,
``h, w = H // patch, W // patch`` — the grid of ``chefer_relevance``.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from fer_jax.attribution.core import (LayerTaps, Target, Variables, inference_variables,
                                      target_logits)
from fer_jax.errors import UserError

ATTENTION_RULES = ("attnlrp", "cp")
# Factors on the signal reaching Q, K and V (the thirds of the qkv projection's output).
QKV_FACTORS = {"attnlrp": (0.25, 0.25, 0.5), "cp": (0.0, 0.0, 1.0)}
LEVELS = ("input", "tokens")


# --------------------------------------------------------------------------------------------
# Rules as changes of the backward pass (forward values unchanged)


def check_attention_rule(attention_rule: str) -> None:
    if attention_rule not in ATTENTION_RULES:
        raise UserError(f"unknown attention_rule {attention_rule!r}; choose one of "
                        f"{', '.join(ATTENTION_RULES)}")


def scale_gradient(z: jnp.ndarray, factor) -> jnp.ndarray:
    """``z`` unchanged (exactly); its cotangent multiplied by ``factor`` (broadcast against
    ``z``)."""
    constant = jax.lax.stop_gradient(z)
    return constant + factor * (z - constant)


def identity_rule(h: jnp.ndarray, a: jnp.ndarray) -> jnp.ndarray:
    """``a = f(h)`` of an elementwise ``f`` (same shapes), returned unchanged, with the
    identity rule's backward ``s_h = s_a · a / h`` (``R_h = R_a``); ``a`` itself gets no
    cotangent. Where ``h = 0`` the ratio is ``a`` (0 for GELU), so ``R_h = 0 = R_a`` when
    ``f(0) = 0``."""
    ratio = jax.lax.stop_gradient(a / jnp.where(h == 0, 1, h).astype(a.dtype))
    return jax.lax.stop_gradient(a) + ratio * (h - jax.lax.stop_gradient(h)).astype(a.dtype)


def layer_norm_linear(module: nn.LayerNorm, x: jnp.ndarray) -> jnp.ndarray:
    """LayerNorm with the standard deviation held constant and without ``β``:
    ``(x − μ(x)) · γ / stop_gradient(σ(x))``, linear in ``x`` (shape of ``x``). Its values
    equal the module's output minus ``β`` up to rounding; only its gradient is used."""
    axes = module.reduction_axes
    axes = tuple(a % x.ndim for a in (axes if isinstance(axes, tuple | list) else (axes,)))
    xf = x.astype(jnp.float32)
    centred = xf - xf.mean(axis=axes, keepdims=True)
    variance = jax.lax.stop_gradient((centred * centred).mean(axis=axes, keepdims=True))
    out = centred * jax.lax.rsqrt(variance + module.epsilon)
    if module.use_scale:
        features = module.feature_axes
        features = tuple(a % x.ndim for a in (features if isinstance(features, tuple | list)
                                               else (features,)))
        shape = [x.shape[a] if a in features else 1 for a in range(x.ndim)]
        out = out * jax.lax.stop_gradient(module.variables["params"]["scale"]).reshape(shape)
    return out


class AttnLRPRules:
    """Context manager: inside it, the backward pass of any ``model.apply`` propagates the
    AttnLRP signal (module docstring; ``attention_rule`` 'attnlrp' or 'cp'). Forward values are
    unchanged. Counts the modules it changed (``attention``, ``norms``, ``activations``).

    >>> with AttnLRPRules():
    ...     logits = model.apply(variables, x, train=False)

    Other interceptors entered *inside* it (``LayerTaps``) see the raw outputs of the layers,
    so the gradient of a tap is the signal at that output.
    """

    def __init__(self, attention_rule: str = "attnlrp"):
        check_attention_rule(attention_rule)
        self.factors = QKV_FACTORS[attention_rule]
        self.counts = {"attention": 0, "norms": 0, "activations": 0}
        self._context = None

    def intercept(self, next_fun, args, kwargs, context):
        module, method = context.module, context.method_name
        if method == "__call__" and isinstance(module, nn.LayerNorm):
            return self._layer_norm(module, next_fun, args, kwargs)
        if method == getattr(module, "attribution_elementwise", None):
            self.counts["activations"] += 1
            h = args[0] if args else kwargs["x"]
            return identity_rule(h, next_fun(*args, **kwargs))
        out = next_fun(*args, **kwargs)
        if (method == "__call__" and isinstance(module, nn.Dense) and module.name is not None
                and module.name == getattr(module.parent, "attribution_qkv", None)):
            self.counts["attention"] += 1
            third = out.shape[-1] // 3
            factors = jnp.repeat(jnp.asarray(self.factors, out.dtype), third)
            return scale_gradient(out, factors)
        return out

    def _layer_norm(self, module, next_fun, args, kwargs):
        """The module's own output on a constant input (its ``β`` and any tap inside keep their
        gradient) plus the zero ``lin − stop_gradient(lin)`` carrying the rule's gradient to
        ``x``."""
        self.counts["norms"] += 1
        x = args[0] if args else kwargs["x"]
        rest = {k: v for k, v in kwargs.items() if k != "x"}
        y = next_fun(jax.lax.stop_gradient(x), *args[1:], **rest)
        lin = layer_norm_linear(module, x)
        return y + (lin - jax.lax.stop_gradient(lin)).astype(y.dtype)

    def check(self, model: nn.Module) -> None:
        """Raises ``UserError`` when the forward pass called no attention module that names
        its fused projection (``attribution_qkv``, as ``timesformer.Attention`` does)."""
        if not self.counts["attention"]:
            raise UserError(f"attn_lrp needs a transformer whose attention modules name their "
                            f"fused q, k, v projection (attribution_qkv, as fer_jax.models."
                            f"timesformer's do); "
                            f"{type(model).__name__} calls none — use lrp for CNNs")

    def __enter__(self) -> "AttnLRPRules":
        self._context = nn.intercept_methods(self.intercept)
        self._context.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._context.__exit__(*exc)


# --------------------------------------------------------------------------------------------
# Taps on the embedding


class _EmbedTap:
    """Records the output of the root module's ``embed`` method, adding ``delta`` (a pytree
    like that output) to it when given."""

    def __init__(self, delta=None):
        self.delta, self.outputs = delta, []

    def intercept(self, next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name != "embed" or context.module.path:
            return out
        if self.delta is not None:
            out = jax.tree.map(jnp.add, out, self.delta)
        self.outputs.append(out)
        return out


def _zeros(shapes):
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _propagate(model, variables, x, target, attention_rule: str, layers=(), embed=False):
    """``(s_x [x.shape], {layer: (output, signal)}, (embed output, signal) or None, logits)``
    in one forward and one backward pass."""
    check_attention_rule(attention_rule)
    variables = inference_variables(variables)
    layers = tuple(layers)
    x = jnp.asarray(x)

    def forward(x, deltas, embed_delta):
        tap = _EmbedTap(embed_delta)
        # The rules outermost: the taps inside them see the layers' raw outputs (AttnLRPRules).
        with AttnLRPRules(attention_rule) as rules, nn.intercept_methods(tap.intercept), \
                LayerTaps(layers, deltas) as taps:
            logits = model.apply(variables, x, train=False)
        rules.check(model)
        outputs = taps.outputs(model, variables, x) if layers else {}
        return logits, outputs, (tap.outputs[0] if len(tap.outputs) == 1 else None)

    _, layer_shapes, embed_shapes = jax.eval_shape(lambda x: forward(x, None, None), x)
    if embed and embed_shapes is None:
        raise UserError(f"level='tokens' needs a model whose embed method (called once) "
                        f"returns (cls [B, D], tokens [B, N, T, D]), as TimeSformer's; "
                        f"{type(model).__name__} has none")
    embed_delta = _zeros(embed_shapes) if embed else None

    def score(x, deltas, embed_delta):
        logits, outputs, embedded = forward(x, deltas, embed_delta)
        return target_logits(logits, target).sum(), (outputs, embedded, logits)

    (s_x, s_layers, s_embed), (outputs, embedded, logits) = jax.grad(
        score, argnums=(0, 1, 2), has_aux=True)(x, _zeros(layer_shapes), embed_delta)
    layer_pairs = {k: (outputs[k], s_layers[k]) for k in outputs}
    return s_x, layer_pairs, ((embedded, s_embed) if embed else None), logits


def _relevance(output, signal):
    return jax.tree.map(lambda o, s: o.astype(jnp.float32) * s.astype(jnp.float32),
                        output, signal)


# --------------------------------------------------------------------------------------------
# Public API


def attn_lrp_relevance(model: nn.Module, variables: Variables, x: jnp.ndarray,
                       target: Target = None, *, attention_rule: str = "attnlrp",
                       layers=()) -> tuple[jnp.ndarray, dict]:
    """``(input relevance [x.shape] per channel, {layer: relevance of its output})``.

    ``layers``: paths of submodules called once per forward pass (``module_paths``); each
    relevance has the structure of the layer's output (``R = output ⊙ signal``; a divided
    block's ``(cls, tokens)``, a ``qkv`` projection's ``[..., 3D]`` whose thirds are Q, K, V).
    One forward and one backward pass for the whole batch.
    """
    s_x, pairs, _, _ = _propagate(model, variables, x, target, attention_rule, layers)
    relevance = jnp.asarray(x).astype(jnp.float32) * s_x.astype(jnp.float32)
    return relevance, {k: _relevance(*pair) for k, pair in pairs.items()}


def token_relevance(model: nn.Module, variables: Variables, x: jnp.ndarray,
                    target: Target = None, *, attention_rule: str = "attnlrp"
                    ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(cls token relevance [B], patch token relevance [B, T, h, w])`` of the tokens entering
    the first block (``model.embed``'s output, summed over the hidden axis)."""
    _, _, (embedded, signal), _ = _propagate(model, variables, x, target, attention_rule,
                                             embed=True)
    cls, tokens = _relevance(embedded, signal)  # [B, D], [B, N, T, D]
    batch, frames, height, width = x.shape[:4]
    h, w = height // model.patch_size, width // model.patch_size
    tokens = tokens.sum(axis=-1).reshape(batch, h, w, frames)
    return cls.sum(axis=-1), jnp.moveaxis(tokens, 3, 1)


def attn_lrp(model: nn.Module, variables: Variables, x: jnp.ndarray, target: Target = None,
             *, attention_rule: str = "attnlrp", level: str = "input") -> jnp.ndarray:
    """AttnLRP relevance of each example's target logit.

    ``x [B, T, H, W, C]``; ``target``: None (predicted class), an int or an int array ``[B]``;
    ``attention_rule``: ``'attnlrp'`` (the paper's softmax and uniform product rules) or
    ``'cp'`` (CP-LRP: attention probabilities held constant); ``level``: ``'input'`` →
    ``[B, T, H, W]`` (summed over channels), ``'tokens'`` → ``[B, T, h, w]`` (the patch tokens
    entering the first block). One forward and one backward pass for the whole batch.
    """
    if level not in LEVELS:
        raise UserError(f"unknown attn_lrp level {level!r}; choose one of {', '.join(LEVELS)}")
    if level == "tokens":
        return token_relevance(model, variables, x, target, attention_rule=attention_rule)[1]
    return attn_lrp_relevance(model, variables, x, target,
                              attention_rule=attention_rule)[0].sum(axis=-1)
