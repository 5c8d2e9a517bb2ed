"""Classification metrics computed from a confusion matrix (rows = true, columns = predicted)."""
from __future__ import annotations

import numpy as np


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
