"""LRP composites: which rule (``attribution/lrp_rules.py``) each layer of a model gets, as
Zennit's composites (``zennit.composites``) assign rules by layer type and by name.

A ``Composite`` is an ordered list of ``(selector, rule)`` pairs; a layer (an ``nn.Conv``,
``nn.Dense`` or unfolded ``nn.BatchNorm`` called by the model) gets the rule of the *first*
selector it matches, and a layer no selector matches gets the ordinary backward pass, which
in LRP's relevance-per-activation form is LRP-0 (``lrp.py``). Selectors:

* a layer type: ``'conv'`` (``nn.Conv``), ``'dense'`` (``nn.Dense``), ``'linear'`` (either,
  Zennit's ``Linear``), ``'batch_norm'`` (an ``nn.BatchNorm`` that is not folded into the
  ``nn.Conv``/``nn.Dense`` before it: a folded one is part of that layer and takes its rule, as
  after Zennit's ``SequentialMergeBatchNorm``), or a flax module class / tuple of classes
  (``isinstance``);
* ``'first'``: the first ``nn.Conv``/``nn.Dense`` the input reaches (call order), where the
  input rules ``Flat``, ``WSquare`` and ``ZBox`` belong (they may explain no other layer);
* any other string: a glob (``fnmatch``, case-sensitive) over the layer's module path, written
  with slashes as ``attribution.module_paths`` lists them: ``'conv1'``, ``'layer4_*'`` (``*``
  crosses slashes too: ``'layer4_*'`` matches ``'layer4_1/conv2'``), ``'*/pointwise'``. A
  module whose path is one of the type names above is selected with a glob such as
  ``'[c]onv'``. A glob that matches no layer of the model raises ``UserError`` (a typo would
  otherwise leave the layers to the next selectors silently).

Rules are rule objects or, in a dict given to ``lrp(composite=…)``, names (``RULE_NAMES``)
built with ``lrp``'s options (``epsilon``, ``alpha``, ``beta``, ``gamma``, ``low``, ``high``)
and Zennit's defaults otherwise, so that a config can write
``lrp(composite={'layer4_*': 'gamma', 'conv': 'zplus', 'dense': 'epsilon'}, gamma=0.5)``.

Presets (``PRESETS``; Zennit's registered composites of the same names and definitions, with
stabiliser 1e-6 for every rule but ε)::

    epsilon_plus               conv: ZPlus                    dense: Epsilon(ε)
    epsilon_alpha2_beta1       conv: AlphaBeta(2, 1)          dense: Epsilon(ε)
    epsilon_plus_flat          first: Flat, conv: ZPlus        dense: Epsilon(ε)
    epsilon_alpha2_beta1_flat  first: Flat, conv: AlphaBeta(2, 1), dense: Epsilon(ε)
    epsilon_gamma_box          first: ZBox(low, high), conv: Gamma(γ = 0.25), dense: Epsilon(ε)

and in every preset ``batch_norm: Pass`` (Zennit's ``layer_map_base``; it also maps average
pooling and sums to its ``Norm`` rule, LRP-ε with ε = 1e-6, which the ordinary backward pass
of the signal does with ε = 0). A preset's ``layers`` (a dict or pairs, as ``Composite``) are
matched before its own selectors, like Zennit's ``layer_map`` argument. Differences to
Zennit: the first layer of ``epsilon_gamma_box`` is the first ``nn.Conv``/``nn.Dense`` called
(Zennit's: the first convolution registered; the same layer in every model of the zoo);
Zennit's BatchNorm ``Pass`` hands relevance that arrives at a zero input (behind a ReLU that
is off) on to the negative pre-activation, which the signal form cannot (``lrp_rules.Pass``);
custom modules that are not ``nn.Conv``/``nn.Dense`` (the zoo's ``DepthwiseConv`` in
``mini_xception``) get LRP-0, where Zennit's type map would give a ``Conv2d`` the conv rule.

Defaults per zoo model
----------------------
``lrp(model, variables, x)`` without ``rule``, ``input_rule`` or ``composite`` uses the
model's ``lrp_composite`` attribute (a preset name, a dict or a ``Composite``), and LRP-ε
(``rule='epsilon'``, the earlier default) for models without one. The papers of the zoo do
not fix rules (Forsman & Singh cite Bach et al. 2015 and Montavon et al. 2019 without naming
the rule per layer), so the zoo follows the kind of composite Kohlbrenner et al. (2020,
"Towards best practice in explaining neural network decisions with LRP") recommend for
CNNs — ε for the dense layers, z⁺ (α = 1, β = 0) for the convolutions, a rule of its own for
the input layer — as Zennit ships it, ``epsilon_plus_flat`` (flat at the input: the inputs
are normalised pixels, so the bounds z^B needs would depend on each config's normalisation):

* ``vgg16_3d``, ``c3d``, ``resnet3d_18``, ``resnext3d_101``, ``resnet2d_50``, ``scn``,
  ``early_fusion_cnn``: ``'epsilon_plus_flat'``;
* ``i3d``: ``epsilon_plus_flat`` with ``conv3d_0c_1x1: epsilon`` and ``mini_xception``: with
  ``head: epsilon``: their classifiers are convolutions, given the dense layers' rule;
* ``tcn``: ``epsilon_plus`` with ``first: w2``: its input is landmark coordinates, an
  unbounded real domain, for which Montavon et al. (2017, 2019) give the w² rule;
* TimeSformer: none (LRP-ε; attention and GELU are not LRP-explained here).

``TemporalPooling`` takes its backbone's.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn

from fer_jax.attribution.lrp_rules import (AlphaBeta, Epsilon, Flat, Gamma, Pass, Rule,
                                           WSquare, ZBox, ZPlus, rule_from_name)
from fer_jax.errors import UserError

LAYER_TYPES = {"conv": (nn.Conv,), "dense": (nn.Dense,), "linear": (nn.Conv, nn.Dense),
               "batch_norm": (nn.BatchNorm,)}
FIRST = "first"
# The legacy rules of lrp(rule=…, input_rule=…): biases ignored, stabiliser 1e-9.
LEGACY_RULES = ("epsilon", "zplus", "alpha_beta")
LEGACY_INPUT_RULES = ("w2", "flat")
LEGACY_STABILISER = 1e-9


def _is_class(selector: Any) -> bool:
    classes = selector if isinstance(selector, tuple) else (selector,)
    return bool(classes) and all(isinstance(c, type) and issubclass(c, nn.Module)
                                 for c in classes)


def _check_selector(selector: Any) -> None:
    if not (isinstance(selector, str) and selector) and not _is_class(selector):
        raise UserError(f"LRP composite selector {selector!r} is neither a layer type "
                        f"({', '.join(LAYER_TYPES)}, 'first', a flax module class) nor a glob "
                        "over module paths")


def is_pattern(selector: Any) -> bool:
    """Whether ``selector`` is a glob over module paths (not a type or ``'first'``)."""
    return isinstance(selector, str) and selector not in LAYER_TYPES and selector != FIRST


def path_matches(pattern: str, path: str) -> bool:
    """Whether the glob ``pattern`` matches the module path ``path`` (``'layer4_1/conv2'``)."""
    return fnmatch.fnmatchcase(path, pattern)


def matches(selector: Any, module: nn.Module, path: str, first: bool) -> bool:
    """Whether the layer ``module`` at ``path`` is selected; ``first``: it is the first
    ``nn.Conv``/``nn.Dense`` called."""
    if selector == FIRST:
        return first
    if isinstance(selector, str):
        if selector in LAYER_TYPES:
            return isinstance(module, LAYER_TYPES[selector])
        return path_matches(selector, path)
    return isinstance(module, selector)


class Composite:
    """Ordered ``(selector, rule)`` pairs; a layer gets the rule of the first selector it
    matches (see the module docstring).

    ``rules``: a dict ``{selector: rule}`` (in order) or a sequence of pairs; a rule is a
    ``lrp_rules.Rule`` or a name of ``RULE_NAMES`` built with ``options`` (``epsilon``,
    ``alpha``, ``beta``, ``gamma``, ``low``, ``high``).

    >>> Composite({'first': Flat(), 'layer4_*': Epsilon(0.25), 'conv': ZPlus(),
    ...            'dense': Epsilon()})
    """

    def __init__(self, rules: Mapping | Sequence, **options):
        if not isinstance(rules, (Mapping, Sequence)) or isinstance(rules, str):
            raise UserError(f"an LRP composite is a dict {{selector: rule}}, got {rules!r}")
        pairs = []
        for item in (rules.items() if isinstance(rules, Mapping) else rules):
            if not (isinstance(item, tuple) and len(item) == 2):
                raise UserError(f"an LRP composite pairs selectors with rules, got {item!r}")
            selector, rule = item
            _check_selector(selector)
            if isinstance(rule, str):
                rule = rule_from_name(rule, **options)
            elif not isinstance(rule, Rule):
                raise UserError(f"the LRP rule for {selector!r} must be a rule name or a rule "
                                f"of fer_jax.attribution.lrp_rules, got {rule!r}")
            pairs.append((selector, rule))
        self.rules: tuple[tuple[Any, Rule], ...] = tuple(pairs)

    def rule_for(self, module: nn.Module, first: bool) -> Rule | None:
        """The rule of the first selector matching ``module`` (None: no selector does)."""
        path = "/".join(module.path)
        return next((rule for selector, rule in self.rules
                     if matches(selector, module, path, first)), None)

    @property
    def has_first(self) -> bool:
        """Whether a selector is ``'first'``."""
        return any(s == FIRST for s, _ in self.rules)

    @property
    def patterns(self) -> tuple[str, ...]:
        """The selectors that are globs over module paths."""
        return tuple(s for s, _ in self.rules if is_pattern(s))

    def __eq__(self, other):
        return isinstance(other, Composite) and self.rules == other.rules

    def __hash__(self):
        return hash(self.rules)

    def __repr__(self):
        return f"Composite({dict(self.rules)!r})"


def _preset(layers, first: Rule | None, conv: Rule, epsilon: float) -> Composite:
    own = ([(FIRST, first)] if first is not None else []) + [
        ("batch_norm", Pass()), ("conv", conv), ("dense", Epsilon(epsilon))]
    given = Composite(layers or {}).rules
    return Composite(list(given) + own)


def epsilon_plus(epsilon: float = 1e-6, stabilizer: float = 1e-6, layers=None) -> Composite:
    """Zennit's ``EpsilonPlus``: z⁺ for convolutions, ε for dense layers."""
    return _preset(layers, None, ZPlus(stabilizer), epsilon)


def epsilon_alpha2_beta1(epsilon: float = 1e-6, stabilizer: float = 1e-6,
                         layers=None) -> Composite:
    """Zennit's ``EpsilonAlpha2Beta1``: αβ (2, 1) for convolutions, ε for dense layers."""
    return _preset(layers, None, AlphaBeta(2.0, 1.0, stabilizer), epsilon)


def epsilon_plus_flat(epsilon: float = 1e-6, stabilizer: float = 1e-6,
                      layers=None) -> Composite:
    """Zennit's ``EpsilonPlusFlat``: ``epsilon_plus`` with the flat rule for the first layer."""
    return _preset(layers, Flat(stabilizer), ZPlus(stabilizer), epsilon)


def epsilon_alpha2_beta1_flat(epsilon: float = 1e-6, stabilizer: float = 1e-6,
                              layers=None) -> Composite:
    """Zennit's ``EpsilonAlpha2Beta1Flat``: ``epsilon_alpha2_beta1``, flat first layer."""
    return _preset(layers, Flat(stabilizer), AlphaBeta(2.0, 1.0, stabilizer), epsilon)


def epsilon_gamma_box(low: Any = None, high: Any = None, epsilon: float = 1e-6,
                      gamma: float = 0.25, stabilizer: float = 1e-6, layers=None) -> Composite:
    """Zennit's ``EpsilonGammaBox``: z^B (input bounds ``low``, ``high``) for the first layer,
    γ for the other convolutions, ε for dense layers."""
    if low is None or high is None:
        raise UserError("the epsilon_gamma_box composite needs the input bounds: pass low=… "
                        "and high=… (floats or arrays per channel)")
    return _preset(layers, ZBox(low, high, stabilizer), Gamma(gamma, stabilizer), epsilon)


PRESETS = {"epsilon_plus": epsilon_plus, "epsilon_alpha2_beta1": epsilon_alpha2_beta1,
           "epsilon_plus_flat": epsilon_plus_flat,
           "epsilon_alpha2_beta1_flat": epsilon_alpha2_beta1_flat,
           "epsilon_gamma_box": epsilon_gamma_box}


def legacy_composite(rule: str = "epsilon", input_rule: str | None = None, *,
                     epsilon: float = 1e-6, alpha: float = 2.0,
                     beta: float = 1.0) -> Composite:
    """The composite of ``lrp(rule=…, input_rule=…)``: ``rule`` for every ``nn.Conv``,
    ``nn.Dense`` and unfolded ``nn.BatchNorm``, ``input_rule`` for the first layer; z⁺, αβ
    and w² ignore biases (stabiliser 1e-9), as before composites existed."""
    if rule not in LEGACY_RULES:
        raise UserError(f"unknown LRP rule {rule!r}; choose one of {', '.join(LEGACY_RULES)}, "
                        f"or a composite (composite='epsilon_plus', …)")
    if input_rule is not None and input_rule not in LEGACY_INPUT_RULES:
        raise UserError(f"unknown LRP input_rule {input_rule!r}; choose None (the same rule as "
                        f"every layer) or one of {', '.join(LEGACY_INPUT_RULES)}")
    layer = {"epsilon": lambda: Epsilon(epsilon),
             "zplus": lambda: ZPlus(LEGACY_STABILISER, ignore_bias=True),
             "alpha_beta": lambda: AlphaBeta(alpha, beta, LEGACY_STABILISER,
                                             ignore_bias=True)}[rule]()
    if rule != "epsilon":
        Epsilon(epsilon)  # the same check of epsilon for every rule, as before
    pairs = [("linear", layer), ("batch_norm", layer)]
    if input_rule is not None:
        first = (WSquare(LEGACY_STABILISER, ignore_bias=True) if input_rule == "w2"
                 else Flat(LEGACY_STABILISER))
        pairs.insert(0, (FIRST, first))
    return Composite(pairs)


def as_composite(spec: Any, *, epsilon: float = 1e-6, alpha: float = 2.0, beta: float = 1.0,
                 gamma: float = 0.25, low: Any = None, high: Any = None) -> Composite:
    """A ``Composite`` from a preset name, a dict / pairs of selectors and rules, or itself."""
    if isinstance(spec, Composite):
        return spec
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise UserError(f"unknown LRP composite {spec!r}; choose one of "
                            f"{', '.join(PRESETS)}, a dict {{selector: rule}} or a Composite")
        if spec == "epsilon_gamma_box":
            return epsilon_gamma_box(low, high, epsilon=epsilon, gamma=gamma)
        return PRESETS[spec](epsilon=epsilon)
    return Composite(spec, epsilon=epsilon, alpha=alpha, beta=beta, gamma=gamma, low=low,
                     high=high)


def default_composite(model: nn.Module) -> Any:
    """The model's ``lrp_composite`` (a preset name, dict or ``Composite``), or None."""
    return getattr(model, "lrp_composite", None)


def resolve(model: nn.Module, composite: Any = None, rule: str | None = None,
            input_rule: str | None = None, *, epsilon: float = 1e-6, alpha: float = 2.0,
            beta: float = 1.0, gamma: float = 0.25, low: Any = None,
            high: Any = None) -> Composite:
    """The composite ``lrp`` applies: ``composite`` if given; else ``rule``/``input_rule`` if
    either is given (``legacy_composite``); else the model's default, else LRP-ε."""
    legacy = rule is not None or input_rule is not None
    if composite is not None and legacy:
        raise UserError("give LRP either rule=/input_rule= or composite=, not both (put the "
                        "rules into the composite)")
    if composite is None and not legacy:
        composite = default_composite(model)
    if composite is None:
        return legacy_composite(rule or "epsilon", input_rule, epsilon=epsilon, alpha=alpha,
                                beta=beta)
    return as_composite(composite, epsilon=epsilon, alpha=alpha, beta=beta, gamma=gamma,
                        low=low, high=high)
