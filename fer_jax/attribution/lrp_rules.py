"""LRP rules: how one parameterised layer passes relevance from its output to its input.

A rule sees a layer as ``Layer(linear, kernel, bias, a, z)``: input ``a``, output
``z = linear(kernel, a) + bias`` (``linear(w, ·)`` the layer's bias-free linear map, ``bias``
broadcastable to ``z`` or None) and the relevance ``R_z`` of the output (shape of ``z``). Its
``backward(layer, R_z)`` returns the relevance per unit of input, ``s_a`` with
``R_a = a · s_a`` (shape of ``a``), which the ordinary backward pass then carries through
ReLUs, pools and reshapes (see ``attribution/lrp.py``). *Input rules* (``Flat``, ``WSquare``,
``ZBox``: ``returns_relevance``) return ``R_a`` itself; they can only explain the first
layer, whose input is the model's input up to moves of values.

The rules are Zennit 0.5.1's (``zennit.rules``), transcribed to the relevance-per-activation
signal; ``Wᵀ q`` is the vector-Jacobian product of ``linear(W, ·)``, ``W⁺ = max(W, 0)``,
``W⁻ = min(W, 0)`` (likewise ``a⁺``, ``a⁻``, ``b⁺``, ``b⁻``), and ``stab(d) = d + s·sign(d)``
with ``sign(0) = +1`` and ``s`` the rule's ``stabilizer`` (Zennit's ``Stabilizer``):

* ``Epsilon(epsilon)``: ``s_a = Wᵀ (R_z / stab(z))`` with ``s = epsilon``.
* ``AlphaBeta(alpha, beta)`` (``α − β = 1``, ``β ≥ 0``): ``z⁺ = W⁺a⁺ + W⁻a⁻ + b⁺``,
  ``z⁻ = W⁻a⁺ + W⁺a⁻ + b⁻``; ``R_a = α (a⁺ W⁺ᵀ + a⁻ W⁻ᵀ)(R_z / stab(z⁺)) −
  β (a⁺ W⁻ᵀ + a⁻ W⁺ᵀ)(R_z / stab(z⁻))``. ``ZPlus()`` is ``α = 1, β = 0``.
* ``Gamma(gamma)`` (Zennit's generalised γ rule): with ``W↑ = W + γW⁺``, ``W↓ = W + γW⁻``,
  ``p = W↑a⁺ + W↓a⁻ + b + γb⁺`` and ``n = W↓a⁺ + W↑a⁻ + b + γb⁻``:
  ``R_a = (a⁺ W↑ᵀ + a⁻ W↓ᵀ)([z > 0] R_z / stab(p)) + (a⁺ W↓ᵀ + a⁻ W↑ᵀ)([z < 0] R_z / stab(n))``.
  For ``a ≥ 0`` this is Montavon et al.'s LRP-γ.
* ``Flat()``: ``R_a = 1ᵀ (R_z / stab(1·1))`` (every weight and input 1, no bias: each output's
  relevance shared equally by the inputs it sees; zero padding is not an input).
* ``WSquare()``: ``R_a = (W²)ᵀ (R_z / stab(W²·1 + b²))`` (Zennit squares the bias too).
* ``ZBox(low, high)``: ``R_a = a·Wᵀq − low·W⁺ᵀq − high·W⁻ᵀq`` with
  ``q = R_z / stab(Wa − W⁺low − W⁻high)``; ``low`` and ``high``, the bounds of the input,
  broadcast (NumPy rules) against the first layer's input.
* ``Pass()``: ``R_a = R_z`` (elementwise layers: Zennit's rule for BatchNorm that is not
  folded). In the signal form ``s_a = R_z / a``; where ``a = 0`` (behind a ReLU that is off)
  the relevance is dropped, where Zennit would hand it to the negative pre-activation.

``ignore_bias=True`` (``Epsilon``, ``ZPlus``, ``AlphaBeta``, ``Gamma``, ``WSquare``) drops
the bias from every term above, as Zennit's ``zero_params=['bias']``: relevance is then
conserved (``Σ R_a = Σ R_z``) by every rule but ``Epsilon`` (whose ``z`` has no bias, so it
still does not, unless the bias is 0). The rules of ``lrp(rule=…)`` keep their earlier
definitions: ``'zplus'``, ``'alpha_beta'`` and ``input_rule='w2'`` are these rules with
``ignore_bias=True`` (α-β and z⁺ stabilised by 1e-9), ``'epsilon'`` is ``Epsilon``.

Every rule is a frozen dataclass (hashable when its fields are), validated on construction;
bad values raise ``UserError``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax.errors import UserError


class Layer(NamedTuple):
    """A parameterised layer as rules see it: ``z = linear(kernel, a) + bias``.

    ``linear(w, v)``: the layer's bias-free linear map applied to ``v`` (shape of ``a``) with
    kernel ``w`` (shape of ``kernel``); ``bias``: broadcastable to ``z``, or None.
    """

    linear: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
    kernel: jnp.ndarray
    bias: jnp.ndarray | None
    a: jnp.ndarray
    z: jnp.ndarray


def transpose(linear, w, a, q):
    """``Wᵀ q``: the vector-Jacobian product of the linear map ``linear(w, ·)`` at ``a``."""
    return jax.vjp(lambda v: linear(w, v), a)[1](q)[0]


def stabilise(d: jnp.ndarray, stabilizer: float) -> jnp.ndarray:
    """``d + stabilizer · sign(d)`` with ``sign(0) = +1`` (Zennit's ``stabilize``)."""
    return d + jnp.where(d >= 0, stabilizer, -stabilizer).astype(d.dtype)


def _positive(w):
    return jnp.maximum(w, 0)


def _negative(w):
    return jnp.minimum(w, 0)


def _bias(layer: Layer, ignore: bool, part: Callable | None = None):
    """The layer's bias (``part`` of it: ``_positive`` / ``_negative``), or 0."""
    if ignore or layer.bias is None:
        return 0.0
    return layer.bias if part is None else part(layer.bias)


def _check_positive(name: str, value: float, what: str, example: str) -> None:
    if not value > 0:
        raise UserError(f"LRP {name} must be positive, got {value}; {what}, e.g. {example}")


class Rule:
    """Base of the rules: ``backward(layer, relevance) → s_a`` (``R_a`` when
    ``returns_relevance``)."""

    returns_relevance: ClassVar[bool] = False

    def backward(self, layer: Layer, relevance: jnp.ndarray) -> jnp.ndarray:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Epsilon(Rule):
    """LRP-ε: ``s_a = Wᵀ(R_z / stab(z))``; ``epsilon`` absolute, in the units of ``z``."""

    epsilon: float = 1e-6
    ignore_bias: bool = False

    def __post_init__(self):
        _check_positive("epsilon", self.epsilon, "use a tiny value such as 1e-9 for LRP-0",
                        "Epsilon(1e-9)")

    def backward(self, layer, relevance):
        z = layer.z
        if self.ignore_bias and layer.bias is not None:
            z = layer.linear(layer.kernel, layer.a)
        return transpose(layer.linear, layer.kernel, layer.a,
                         relevance / stabilise(z, self.epsilon))


def _signed_cond(a, unsigned, signed):
    """``unsigned()`` when every input is non-negative (ReLU outputs: every layer but the
    first, in most networks; the terms of ``a⁻`` vanish and their convolutions are skipped),
    else ``signed()``; under ``vmap`` both run."""
    return jax.lax.cond(jnp.all(a >= 0), lambda _: unsigned(), lambda _: signed(), None)


def _by_sign(a, on_pos, on_neg):
    """``on_pos`` where ``a > 0``, ``on_neg`` where ``a < 0``, 0 where ``a = 0`` (whose
    relevance ``a · s_a`` is 0)."""
    return jnp.where(a > 0, on_pos, jnp.where(a < 0, on_neg, 0.0)).astype(a.dtype)


@dataclasses.dataclass(frozen=True)
class AlphaBeta(Rule):
    """LRP-αβ (``α − β = 1``, ``β ≥ 0``); see the module docstring."""

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6
    ignore_bias: bool = False

    def __post_init__(self):
        if abs(self.alpha - self.beta - 1.0) > 1e-6 or self.beta < 0:
            raise UserError(f"the alpha_beta rule needs alpha - beta = 1 and beta >= 0, got "
                            f"alpha={self.alpha}, beta={self.beta}; e.g. alpha=2, beta=1 or "
                            "alpha=1, beta=0")
        _check_positive("stabilizer", self.stabilizer, "it keeps denominators off zero", "1e-6")

    def backward(self, layer, relevance):
        return _signed_cond(layer.a, lambda: self._signal(layer, relevance, signed=False),
                            lambda: self._signal(layer, relevance, signed=True))

    def _signal(self, layer, relevance, signed: bool):
        """``s_a``; ``signed=False`` assumes ``a ≥ 0`` (drops the ``a⁻`` terms)."""
        linear, w, a = layer.linear, layer.kernel, layer.a
        w_pos, w_neg = _positive(w), _negative(w)
        a_pos, a_neg = _positive(a), _negative(a)
        z_pos = linear(w_pos, a_pos) + _bias(layer, self.ignore_bias, _positive)
        if signed:
            z_pos = z_pos + linear(w_neg, a_neg)
        q_pos = relevance / stabilise(z_pos, self.stabilizer)
        on_pos = self.alpha * transpose(linear, w_pos, a, q_pos)  # α W⁺ᵀq⁺ (at a > 0)
        on_neg = self.alpha * transpose(linear, w_neg, a, q_pos) if signed else 0.0
        if self.beta:
            z_neg = linear(w_neg, a_pos) + _bias(layer, self.ignore_bias, _negative)
            if signed:
                z_neg = z_neg + linear(w_pos, a_neg)
            q_neg = relevance / stabilise(z_neg, self.stabilizer)
            on_pos = on_pos - self.beta * transpose(linear, w_neg, a, q_neg)  # − β W⁻ᵀq⁻
            if signed:
                on_neg = on_neg - self.beta * transpose(linear, w_pos, a, q_neg)  # − β W⁺ᵀq⁻
        return _by_sign(a, on_pos, on_neg)


@dataclasses.dataclass(frozen=True)
class ZPlus(Rule):
    """LRP-z⁺: ``AlphaBeta(1, 0)`` (Zennit's ``ZPlus``: positive inputs through positive
    weights, negative inputs through negative ones, plus ``b⁺``)."""

    stabilizer: float = 1e-6
    ignore_bias: bool = False

    def __post_init__(self):
        _check_positive("stabilizer", self.stabilizer, "it keeps denominators off zero", "1e-6")

    def backward(self, layer, relevance):
        return AlphaBeta(1.0, 0.0, self.stabilizer, self.ignore_bias).backward(layer, relevance)


@dataclasses.dataclass(frozen=True)
class Gamma(Rule):
    """Generalised LRP-γ (Zennit's ``Gamma``): positive contributions favoured by ``gamma``."""

    gamma: float = 0.25
    stabilizer: float = 1e-6
    ignore_bias: bool = False

    def __post_init__(self):
        if not self.gamma >= 0:
            raise UserError(f"the gamma rule needs gamma >= 0, got {self.gamma}; e.g. 0.25")
        _check_positive("stabilizer", self.stabilizer, "it keeps denominators off zero", "1e-6")

    def backward(self, layer, relevance):
        return _signed_cond(layer.a, lambda: self._signal(layer, relevance, signed=False),
                            lambda: self._signal(layer, relevance, signed=True))

    def _signal(self, layer, relevance, signed: bool):
        linear, w, a, z = layer.linear, layer.kernel, layer.a, layer.z
        w_up, w_down = w + self.gamma * _positive(w), w + self.gamma * _negative(w)
        a_pos, a_neg = _positive(a), _negative(a)
        bias = _bias(layer, self.ignore_bias)
        p = linear(w_up, a_pos) + bias + self.gamma * _bias(layer, self.ignore_bias, _positive)
        n = linear(w_down, a_pos) + bias + self.gamma * _bias(layer, self.ignore_bias,
                                                              _negative)
        if signed:
            p, n = p + linear(w_down, a_neg), n + linear(w_up, a_neg)
        zero = jnp.zeros_like(relevance)
        q_pos = jnp.where(z > 0, relevance / stabilise(p, self.stabilizer), zero)
        q_neg = jnp.where(z < 0, relevance / stabilise(n, self.stabilizer), zero)
        on_pos = transpose(linear, w_up, a, q_pos) + transpose(linear, w_down, a, q_neg)
        on_neg = (transpose(linear, w_down, a, q_pos) + transpose(linear, w_up, a, q_neg)
                  if signed else 0.0)
        return _by_sign(a, on_pos, on_neg)


@dataclasses.dataclass(frozen=True)
class Flat(Rule):
    """Flat input rule: each output's relevance shared equally by the inputs it sees."""

    stabilizer: float = 1e-6
    returns_relevance: ClassVar[bool] = True

    def __post_init__(self):
        _check_positive("stabilizer", self.stabilizer, "it keeps denominators off zero", "1e-6")

    def backward(self, layer, relevance):
        ones, w = jnp.ones_like(layer.a), jnp.ones_like(layer.kernel)
        total = layer.linear(w, ones)
        return transpose(layer.linear, w, ones, relevance / stabilise(total, self.stabilizer))


@dataclasses.dataclass(frozen=True)
class WSquare(Rule):
    """w² input rule: ``R_i = Σ_j w_ij² / (Σ_i' w_i'j² + b_j²) R_j``."""

    stabilizer: float = 1e-6
    ignore_bias: bool = False
    returns_relevance: ClassVar[bool] = True

    def __post_init__(self):
        _check_positive("stabilizer", self.stabilizer, "it keeps denominators off zero", "1e-6")

    def backward(self, layer, relevance):
        ones, w = jnp.ones_like(layer.a), layer.kernel * layer.kernel
        bias = _bias(layer, self.ignore_bias)
        total = layer.linear(w, ones) + bias * bias
        return transpose(layer.linear, w, ones, relevance / stabilise(total, self.stabilizer))


@dataclasses.dataclass(frozen=True)
class ZBox(Rule):
    """z^B input rule for inputs bounded by ``low ≤ a ≤ high`` (floats or arrays that
    broadcast against the first layer's input, e.g. per channel ``[C]``)."""

    low: Any
    high: Any
    stabilizer: float = 1e-6
    returns_relevance: ClassVar[bool] = True

    def __post_init__(self):
        low, high = np.asarray(self.low, np.float64), np.asarray(self.high, np.float64)
        try:
            ordered = bool(low.size and high.size and np.all(low <= high))
        except ValueError:  # shapes that do not broadcast
            ordered = False
        if not ordered:
            raise UserError(f"the ZBox rule needs bounds low <= high, got low={self.low}, "
                            f"high={self.high}")
        _check_positive("stabilizer", self.stabilizer, "it keeps denominators off zero", "1e-6")

    def backward(self, layer, relevance):
        linear, w, a = layer.linear, layer.kernel, layer.a
        try:
            low = jnp.broadcast_to(jnp.asarray(self.low, a.dtype), a.shape)
            high = jnp.broadcast_to(jnp.asarray(self.high, a.dtype), a.shape)
        except ValueError:
            raise UserError(f"ZBox bounds of shapes {jnp.shape(self.low)} and "
                            f"{jnp.shape(self.high)} do not broadcast against the first "
                            f"layer's input {a.shape}") from None
        w_pos, w_neg = _positive(w), _negative(w)
        d = linear(w, a) - linear(w_pos, low) - linear(w_neg, high)
        q = relevance / stabilise(d, self.stabilizer)
        return (a * transpose(linear, w, a, q) - low * transpose(linear, w_pos, a, q)
                - high * transpose(linear, w_neg, a, q))


@dataclasses.dataclass(frozen=True)
class Pass(Rule):
    """``R_a = R_z`` for a layer whose input and output have one shape (BatchNorm)."""

    def backward(self, layer, relevance):
        a = layer.a
        if a.shape != relevance.shape:
            raise UserError(f"the pass rule needs a layer whose input and output have one "
                            f"shape, got {a.shape} → {relevance.shape}")
        nonzero = a != 0
        return jnp.where(nonzero, relevance / jnp.where(nonzero, a, 1), 0).astype(a.dtype)


# Rule names a composite given as a dict may use, with the lrp() options they read.
RULE_NAMES = ("epsilon", "zplus", "alpha_beta", "gamma", "flat", "w2", "zbox", "pass")


def rule_from_name(name: str, *, epsilon: float = 1e-6, alpha: float = 2.0, beta: float = 1.0,
                   gamma: float = 0.25, low: Any = None, high: Any = None) -> Rule:
    """The rule called ``name`` (one of ``RULE_NAMES``) with Zennit's defaults and the given
    options: ``epsilon`` (ε), ``alpha``/``beta`` (αβ), ``gamma`` (γ), ``low``/``high`` (z^B)."""
    if name == "zbox":
        if low is None or high is None:
            raise UserError("the zbox rule needs the input bounds: pass low=… and high=… "
                            "(floats or arrays per channel)")
        return ZBox(low, high)
    factories = {"epsilon": lambda: Epsilon(epsilon), "zplus": ZPlus,
                 "alpha_beta": lambda: AlphaBeta(alpha, beta), "gamma": lambda: Gamma(gamma),
                 "flat": Flat, "w2": WSquare, "pass": Pass}
    if name not in factories:
        raise UserError(f"unknown LRP rule {name!r}; choose one of {', '.join(RULE_NAMES)} "
                        "or a rule object of fer_jax.attribution.lrp_rules")
    return factories[name]()
