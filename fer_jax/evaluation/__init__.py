"""Evaluation: classification metrics and measurements of explanations.

``metrics`` (accuracy, F1, confusion, ROC-AUC, EER accuracy), ``occlusion`` (Du Toit's test,
deletion / insertion), ``face_parts`` (eyes / nose / mouth bands from landmarks),
``localisation`` (AU alignment, pointing game, energy share, intensity correlation),
``explainers`` (method specs of configs); ``measurements`` (the explanation measurements as
plug-ins, one module each, chosen by ``config.explain.measurements``); ``suite`` runs them
all over a split.
"""
from fer_jax.evaluation import explainers, face_parts, localisation, metrics, occlusion  # noqa: F401
