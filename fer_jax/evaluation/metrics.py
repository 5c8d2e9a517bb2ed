"""Classification metrics: from a confusion matrix (rows = true, columns = predicted) or from
per-class scores (ROC AUC and equal-error-rate accuracy, one-vs-rest). NumPy only."""
from __future__ import annotations

import jax
import numpy as np

from fer_jax.errors import UserError


def from_confusion(confusion: np.ndarray, class_names=None) -> dict:
    """Accuracy, per-class accuracy (recall), macro F1 from ``confusion [C, C]`` counts.

    Classes absent from the evaluated split get per-class accuracy ``None`` and are left out
    of the macro means.
    """
    confusion = np.asarray(confusion, np.float64)
    total = confusion.sum()
    true_counts = confusion.sum(axis=1)
    predicted_counts = confusion.sum(axis=0)
    hits = np.diag(confusion)
    present = true_counts > 0
    recall = np.divide(hits, true_counts, out=np.zeros_like(hits), where=present)
    precision = np.divide(hits, predicted_counts, out=np.zeros_like(hits),
                          where=predicted_counts > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(hits),
                   where=(precision + recall) > 0)
    names = class_names or [str(i) for i in range(len(confusion))]
    return {
        "accuracy": float(hits.sum() / total) if total else 0.0,
        "per_class_accuracy": {n: (float(r) if p else None)
                               for n, r, p in zip(names, recall, present)},
        "macro_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "confusion": confusion.astype(np.int64).tolist(),
        "count": int(total),
    }


def roc_auc(scores, labels, num_classes=None) -> dict:
    """One-vs-rest ROC AUC per class by the rank (Mann-Whitney U) formula, ties averaged.

    scores: float [N, C] (probabilities or logits; higher = more likely that class), or for
    two classes float [N] (the score of class 1). labels: int [N] in 0..C-1. num_classes:
    C, checked against ``scores`` when given. With two classes both classes use the binary
    score ``s1 - s0`` (``s`` for [N] scores), so ``per_class`` holds the binary AUC twice.

    Returns ``{"per_class": [C floats or None], "macro": float or None}``: a class without
    positive or without negative samples gets ``None`` and is left out of the macro mean.
    """
    scores, labels = _class_scores(scores, labels, num_classes)
    positive = labels[:, None] == np.arange(scores.shape[1])
    num_positive = positive.sum(axis=0)
    num_negative = len(labels) - num_positive
    rank_sum = np.where(positive, _average_ranks(scores), 0.0).sum(axis=0)
    defined = (num_positive > 0) & (num_negative > 0)
    auc = np.divide(rank_sum - num_positive * (num_positive + 1) / 2.0,
                    num_positive * num_negative, out=np.zeros(len(defined)), where=defined)
    return _per_class_and_macro(auc, defined)


def eer(scores, positives) -> tuple[float, float]:
    """Equal error rate of the binary ``scores [N]`` (higher = positive), ``positives`` bool [N].

    The operating points are the thresholds ``t`` = each unique score (accept ``score >= t``)
    plus a reject-all point at the next float above the highest score. False-positive rate
    falls and false-negative rate rises along them; the EER is where the two cross, linearly
    interpolated between the two bracketing operating points, and the threshold is
    interpolated the same way. Returns ``(eer, threshold)``; raises ``UserError`` when there
    are no positive or no negative samples.
    """
    scores = np.asarray(scores, np.float64).reshape(-1)
    positives = np.asarray(positives, bool).reshape(-1)
    num_positive = int(positives.sum())
    if num_positive == 0 or num_positive == len(positives):
        raise UserError(f"the EER needs positive and negative samples; got {num_positive} "
                        f"positive of {len(positives)}")
    values, inverse = np.unique(scores, return_inverse=True)
    positive_counts = np.bincount(inverse, weights=positives, minlength=len(values))
    negative_counts = np.bincount(inverse, weights=~positives, minlength=len(values))
    false_positives = np.append(np.cumsum(negative_counts[::-1])[::-1], 0.0)
    false_negatives = np.append(np.cumsum(positive_counts) - positive_counts, num_positive)
    thresholds = np.append(values, np.nextafter(values[-1], np.inf))
    fpr = false_positives / (len(positives) - num_positive)
    fnr = false_negatives / num_positive
    gap = fnr - fpr  # -1 at the lowest threshold, +1 at reject-all, strictly increasing
    upper = int(np.argmax(gap >= 0))
    lower = upper - 1
    weight = -gap[lower] / (gap[upper] - gap[lower])
    rate = fpr[lower] + weight * (fpr[upper] - fpr[lower])
    threshold = thresholds[lower] + weight * (thresholds[upper] - thresholds[lower])
    return float(rate), float(threshold)


def eer_accuracy(scores, labels) -> dict:
    """Accuracy at the equal-error-rate threshold, ``1 - EER``, one-vs-rest per class.

    scores: float [N, C], or [N] for two classes (score of class 1); labels: int [N]. Class
    ``c`` is scored by ``eer(scores[:, c], labels == c)``. With two classes (scores [N] or
    [N, 2]) this is the binary ``1 - EER`` of the score ``s1 - s0`` (``s`` for [N]) for both
    classes: the protocol of UNBC-McMaster pain detection, where accuracy is reported at the
    EER threshold. Returns ``{"per_class": [C floats or None], "macro": float or None}``
    (``None`` where a class has no positive or no negative sample, left out of the mean).
    """
    scores, labels = _class_scores(scores, labels)
    accuracy = np.zeros(scores.shape[1])
    defined = np.zeros(scores.shape[1], bool)
    for c in range(scores.shape[1]):
        positives = labels == c
        defined[c] = 0 < positives.sum() < len(labels)
        if defined[c]:
            accuracy[c] = 1.0 - eer(scores[:, c], positives)[0]
    return _per_class_and_macro(accuracy, defined)


def from_scores(scores, labels, class_names=None) -> dict:
    """``from_confusion`` of the argmax predictions plus ROC AUC and EER accuracy.

    scores: float [N, C]; labels: int [N]; class_names: C names (default "0".."C-1"). Adds
    "roc_auc" and "eer_accuracy" (macro over the classes where defined, else None) and
    "roc_auc_per_class" / "eer_accuracy_per_class" ({name: float or None}).
    """
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2:
        raise UserError(f"from_scores needs scores [N, C], got shape {scores.shape}")
    num_classes = scores.shape[1]
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise UserError(f"{len(names)} class names for {num_classes} score columns")
    _, labels = _class_scores(scores, labels)
    predicted = scores.argmax(axis=1)
    confusion = np.bincount(labels * num_classes + predicted,
                            minlength=num_classes ** 2).reshape(num_classes, num_classes)
    result = from_confusion(confusion, names)
    for key, measured in (("roc_auc", roc_auc(scores, labels)),
                          ("eer_accuracy", eer_accuracy(scores, labels))):
        result[key] = measured["macro"]
        result[f"{key}_per_class"] = dict(zip(names, measured["per_class"]))
    return result


def _class_scores(scores, labels, num_classes=None) -> tuple[np.ndarray, np.ndarray]:
    """Checked one-vs-rest ``scores [N, C]`` float64 and ``labels [N]`` int64.

    Two classes (scores [N] or [N, 2]) become ``(-d, d)`` with the binary score ``d`` (``s``
    or ``s1 - s0``), so both classes rank samples by the same binary decision.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if scores.ndim == 1 or (scores.ndim == 2 and scores.shape[1] == 2):
        binary = scores if scores.ndim == 1 else scores[:, 1] - scores[:, 0]
        scores = np.stack([-binary, binary], axis=1)
    if scores.ndim != 2 or len(scores) != len(labels):
        raise UserError(f"scores must be [N, C] (or [N] for two classes) with N = "
                        f"{len(labels)} labels, got shape {scores.shape}")
    if num_classes is not None and num_classes != scores.shape[1]:
        raise UserError(f"num_classes={num_classes} but scores have {scores.shape[1]} classes")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise UserError(f"labels must lie in 0..{scores.shape[1] - 1}, got "
                        f"{labels.min()}..{labels.max()}")
    return scores, labels


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks within each column of ``scores [N, C]``; tied values share their mean."""
    n = len(scores)
    order = np.argsort(scores, axis=0, kind="stable")
    ordered = np.take_along_axis(scores, order, axis=0)
    starts = np.ones(ordered.shape, bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    ends = np.ones(ordered.shape, bool)
    ends[:-1] = starts[1:]
    position = np.arange(n)[:, None]
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=0)
    last = np.minimum.accumulate(np.where(ends, position, n - 1)[::-1], axis=0)[::-1]
    ranks = np.empty(ordered.shape)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=0)
    return ranks


def _per_class_and_macro(values: np.ndarray, defined: np.ndarray) -> dict:
    """``{"per_class": [float or None], "macro": mean over defined or None}``."""
    return {"per_class": [float(v) if d else None for v, d in zip(values, defined)],
            "macro": float(values[defined].mean()) if defined.any() else None}


def gather_predictions(probabilities: list, labels: list, masks: list
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per-batch device probabilities ``[B, C]`` and host labels / padding masks ``[B]`` →
    ``(probabilities [N, C], labels [N])`` of the real examples (one device fetch)."""
    keep = np.concatenate(masks)
    return (np.concatenate(jax.device_get(probabilities))[keep],
            np.concatenate(labels)[keep])
