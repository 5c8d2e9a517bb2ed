"""Tests of the score-based classification metrics (fer_jax.evaluation.metrics)."""
import numpy as np
import pytest

from fer_jax.errors import UserError
from fer_jax.evaluation import metrics


def _tied_scores(seed: int, n: int = 200, c: int = 4):
    """Scores [n, c] rounded to one decimal (many ties), labels [n], informative about class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    scores = rng.random((n, c)) + 0.3 * np.eye(c)[labels]
    return np.round(scores, 1), labels


def _reference_eer(scores, positives):
    """EER and threshold by linear interpolation of scikit-learn's full ROC curve."""
    sk_metrics = pytest.importorskip("sklearn.metrics")
    fpr, tpr, thresholds = sk_metrics.roc_curve(positives, scores, drop_intermediate=False)
    thresholds[0] = np.nextafter(np.max(scores), np.inf)  # the reject-all point
    gap = fpr - (1.0 - tpr)  # strictly increasing along the curve
    return np.interp(0.0, gap, fpr), np.interp(0.0, gap, thresholds)


# --------------------------------------------------------------------------- ROC AUC
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_sklearn_with_ties(seed):
    sk_metrics = pytest.importorskip("sklearn.metrics")
    scores, labels = _tied_scores(seed)
    result = metrics.roc_auc(scores, labels)
    expected = [sk_metrics.roc_auc_score(labels == c, scores[:, c]) for c in range(4)]
    np.testing.assert_allclose(result["per_class"], expected, rtol=1e-12)
    assert result["macro"] == pytest.approx(np.mean(expected))


def test_binary_roc_auc_from_one_or_two_columns_matches_sklearn():
    sk_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 150)
    score = np.round(rng.random(150) + 0.4 * labels, 1)
    expected = sk_metrics.roc_auc_score(labels, score)
    for scores in (score, np.stack([1.0 - score, score], axis=1)):
        per_class = metrics.roc_auc(scores, labels, num_classes=2)["per_class"]
        np.testing.assert_allclose(per_class, [expected, expected], rtol=1e-12)


def test_roc_auc_extremes():
    labels = np.array([0, 0, 1, 1, 1])
    score = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert metrics.roc_auc(score, labels)["per_class"] == [1.0, 1.0]
    assert metrics.roc_auc(-score, labels)["macro"] == 0.0
    assert metrics.roc_auc(np.full(5, 0.7), labels)["macro"] == 0.5


def test_roc_auc_undefined_classes_are_none():
    scores = np.random.default_rng(0).random((6, 4))
    result = metrics.roc_auc(scores, np.array([0, 0, 1, 1, 0, 1]))
    assert result["per_class"][2:] == [None, None]
    assert result["macro"] == pytest.approx(np.mean(result["per_class"][:2]))
    assert metrics.roc_auc(scores, np.zeros(6, int)) == {"per_class": [None] * 4, "macro": None}


def test_roc_auc_rejects_bad_inputs():
    with pytest.raises(UserError, match="num_classes"):
        metrics.roc_auc(np.zeros((3, 4)), [0, 1, 2], num_classes=3)
    with pytest.raises(UserError, match="labels"):
        metrics.roc_auc(np.zeros((3, 4)), [0, 1, 4])


# --------------------------------------------------------------------------- EER
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_matches_interpolated_sklearn_roc(seed):
    scores, labels = _tied_scores(seed)
    for c in range(4):
        rate, threshold = metrics.eer(scores[:, c], labels == c)
        expected_rate, expected_threshold = _reference_eer(scores[:, c], labels == c)
        assert rate == pytest.approx(expected_rate, abs=1e-12)
        assert threshold == pytest.approx(expected_threshold, abs=1e-12)


def test_eer_hand_worked_interpolation():
    # Thresholds 0.4 -> (FPR 1/3, FNR 0) and 0.5 -> (FPR 1/3, FNR 1/2) bracket the crossing;
    # FNR - FPR goes -1/3 -> 1/6, so the weight is 2/3: EER 1/3 at threshold 0.4 + 2/3 * 0.1.
    scores = np.array([0.1, 0.3, 0.5, 0.4, 0.6])
    positives = np.array([False, False, False, True, True])
    rate, threshold = metrics.eer(scores, positives)
    assert rate == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.4 + 0.1 * 2 / 3)


def test_eer_perfect_reversed_and_constant():
    positives = np.array([False, False, True, True])
    scores = np.array([0.1, 0.2, 0.7, 0.9])
    assert metrics.eer(scores, positives) == pytest.approx((0.0, 0.7))
    assert metrics.eer(-scores, positives)[0] == 1.0
    assert metrics.eer(np.ones(4), positives)[0] == 0.5


def test_eer_needs_both_classes():
    with pytest.raises(UserError, match="positive and negative"):
        metrics.eer([0.1, 0.2], [True, True])
    with pytest.raises(UserError, match="positive and negative"):
        metrics.eer([0.1, 0.2], [False, False])


def test_eer_accuracy_per_class_binary_and_absent():
    scores, labels = _tied_scores(4)
    labels[labels == 3] = 0  # class 3 absent
    result = metrics.eer_accuracy(scores, labels)
    expected = [1.0 - _reference_eer(scores[:, c], labels == c)[0] for c in range(3)]
    np.testing.assert_allclose(result["per_class"][:3], expected, atol=1e-12)
    assert result["per_class"][3] is None
    assert result["macro"] == pytest.approx(np.mean(expected))
    score, binary = scores[:, 1], (labels == 1).astype(int)
    expected_binary = 1.0 - _reference_eer(score, binary == 1)[0]
    for two in (score, np.stack([1.0 - score, score], axis=1)):
        result = metrics.eer_accuracy(two, binary)
        np.testing.assert_allclose(result["per_class"], [expected_binary] * 2, atol=1e-12)
        assert result["macro"] == pytest.approx(expected_binary)


# --------------------------------------------------------------------------- from_scores
def test_from_scores_agrees_with_from_confusion_and_handles_absent_classes():
    scores, labels = _tied_scores(5, c=5)
    labels[labels == 4] = 2  # class "e" absent
    names = ["a", "b", "c", "d", "e"]
    result = metrics.from_scores(scores, labels, names)
    predicted = scores.argmax(axis=1)
    confusion = np.zeros((5, 5), int)
    np.add.at(confusion, (labels, predicted), 1)
    reference = metrics.from_confusion(confusion, names)
    for key in ("accuracy", "per_class_accuracy", "macro_accuracy", "macro_f1", "confusion",
                "count"):
        assert result[key] == reference[key]
    auc = metrics.roc_auc(scores, labels)
    assert result["roc_auc"] == auc["macro"]
    assert result["roc_auc_per_class"] == dict(zip(names, auc["per_class"]))
    assert result["roc_auc_per_class"]["e"] is None
    assert result["eer_accuracy_per_class"]["e"] is None
    assert result["eer_accuracy"] == metrics.eer_accuracy(scores, labels)["macro"]


def test_from_scores_default_names_and_bad_shapes():
    result = metrics.from_scores(np.eye(3), [0, 1, 2])
    assert result["accuracy"] == 1.0 and result["roc_auc"] == 1.0
    assert result["eer_accuracy_per_class"] == {"0": 1.0, "1": 1.0, "2": 1.0}
    with pytest.raises(UserError, match=r"\[N, C\]"):
        metrics.from_scores(np.zeros(3), [0, 1, 0])
    with pytest.raises(UserError, match="class names"):
        metrics.from_scores(np.eye(3), [0, 1, 2], ["a", "b"])
