"""Evaluation: classification metrics and measurements of explanations.

``metrics`` (accuracy, F1, confusion, ROC-AUC, EER accuracy), ``occlusion`` (Du Toit's test,
deletion / insertion), ``face_parts`` (eyes / nose / mouth bands from landmarks),
``localisation`` (AU alignment, pointing game, energy share, intensity correlation),
``explainers`` (method specs of configs), ``sanity`` (the sanity checks of Adebayo et al. and
Kindermans et al. for any flax model: stages, cascading randomisation, input-shift
compensation, map similarity); ``measurements`` (the explanation measurements as plug-ins,
one module each, chosen by ``config.explain.measurements``); ``suite`` runs them all over a
split.
"""
from fer_jax.evaluation import (  # noqa: F401
    explainers,
    face_parts,
    localisation,
    metrics,
    occlusion,
    sanity,
)
