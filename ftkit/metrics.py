"""Evaluation metrics: scikit-learn's where it has them, calibration (ECE, reliability diagram), and
sacrebleu's BLEU and chrF for generated text.

NumPy only: this module imports neither torch nor TensorFlow.
"""
import numpy as np
from sklearn import metrics as skm

from .errors import ConfigError, DataError


def classification_metrics(y_true, probs):
    """Accuracy, macro precision/recall/F1, AUC-ROC (one-vs-rest), the expected calibration error
    (15 bins, see :func:`calibration`) and the confusion matrix."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    y_pred = probs.argmax(1)
    labels = np.arange(probs.shape[1])
    out = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "f1_macro": float(skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "auc_roc": _auc(y_true, probs),
        "ece": calibration(y_true, probs)["ece"],
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    return out


def _auc(y_true, probs):
    """AUC-ROC, or NaN when some class is missing from ``y_true`` (it is undefined then)."""
    present = np.unique(y_true)
    if len(present) < 2 or len(present) < probs.shape[1]:
        return float("nan")
    probs = probs / probs.sum(1, keepdims=True)
    if probs.shape[1] == 2:
        return float(skm.roc_auc_score(y_true, probs[:, 1]))
    return float(skm.roc_auc_score(y_true, probs, multi_class="ovr", average="macro"))


def calibration(y_true, probs, n_bins=15):
    """Expected calibration error (ECE) and the data of a reliability diagram (Guo et al. 2017).

    A model is calibrated when, among the examples it predicts with confidence 0.8, 80% are right.
    Each example's confidence is its top-class probability. The examples are put in ``n_bins`` bins
    of equal width over [0, 1]: bin m holds the confidences in ((m - 1) / M, m / M] (an edge belongs
    to the bin below it; the first bin also holds 0). Then

        ECE = sum over bins b of (n_b / N) * |accuracy_b - confidence_b|

    with n_b the examples in bin b, accuracy_b the fraction of them predicted right and confidence_b
    their mean confidence: 0 for a perfectly calibrated model, up to 1.

    ``y_true``: N integer labels; ``probs``: (N, classes) probabilities, rows summing to 1 (what
    ``ftkit.predict`` returns). Returns a dict: ``ece`` (float), ``edges`` (n_bins + 1 bin edges),
    ``count`` (examples per bin), ``confidence`` and ``accuracy`` (per bin; NaN where a bin is empty).
    Plot ``accuracy`` against the bin centres for the reliability diagram.

    torchmetrics' ``multiclass_calibration_error`` (norm "l1") gives the same ECE, except where a
    confidence equals an edge: it puts it in the bin above (and 1.0 in a bin of its own).
    """
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise ConfigError(f"n_bins={n_bins!r} must be a whole number >= 1")
    probs, y_true = _checked_probs(probs), np.asarray(y_true)
    n, k = probs.shape
    if y_true.shape != (n,) or y_true.dtype.kind not in "iu":
        raise DataError(f"y_true must hold one integer label per row of probs ({n}); got shape {y_true.shape} "
                        f"and dtype {y_true.dtype}")
    if n and (y_true.min() < 0 or y_true.max() >= k):
        raise DataError(f"y_true holds label {y_true.max() if y_true.max() >= k else y_true.min()}, outside "
                        f"0..{k - 1} (probs has {k} columns)")
    confidence, correct = probs.max(1), (probs.argmax(1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):   # empty bins: NaN
        mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / count
    used = count > 0
    ece = float(np.sum(count[used] / n * np.abs(accuracy[used] - mean_confidence[used]))) if n else float("nan")
    return {"ece": ece, "edges": edges, "count": count, "confidence": mean_confidence, "accuracy": accuracy}


def _checked_probs(probs):
    """``probs`` as a float64 (N, classes) array, refused unless every value is in [0, 1] and each row
    sums to 1 (to 1e-4: float32 softmax rounding)."""
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] < 1 or p.dtype.kind not in "fiu":
        raise DataError(f"probs must be an (N, classes) array of probabilities; got shape {p.shape} and dtype "
                        f"{p.dtype}")
    p = p.astype(np.float64)
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(f"probs[{i}, {j}] is {p[i, j]}: probabilities must lie in [0, 1] (give softmax outputs, "
                        "not logits)")
    sums = p.sum(1)
    off = np.flatnonzero(np.abs(sums - 1) > 1e-4)
    if len(off):
        raise DataError(f"probs row {off[0]} sums to {sums[off[0]]:.6g}; each row must sum to 1 (one "
                        "probability per class)")
    return p


def regression_metrics(y_true, y_pred):
    """MSE, RMSE, MAE and R2."""
    mse = float(skm.mean_squared_error(y_true, y_pred))
    return {"mse": mse, "rmse": mse ** 0.5, "mae": float(skm.mean_absolute_error(y_true, y_pred)),
            "r2": float(skm.r2_score(y_true, y_pred))}


def generation_metrics(hypotheses, references, normalize=None):
    """Corpus BLEU and chrF (sacrebleu's defaults: BLEU-4 with the 13a tokenizer and the brevity penalty,
    chrF with character 6-grams and beta 2; both 0-100) and the exact-match rate (0-1) of generated texts.

    ``references``: one string per hypothesis, or one list of strings per hypothesis (several references;
    BLEU takes the best n-gram counts over them, exact match any of them). ``normalize`` (optional) maps
    every text, hypotheses and references alike, before scoring: e.g. a tokenizer's lower-casing."""
    import sacrebleu
    hypotheses = _texts(hypotheses, "hypotheses")
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    if len(refs) != len(hypotheses):
        raise DataError(f"{len(hypotheses)} hypotheses but {len(refs)} references; give one (or a list) per hypothesis")
    if not hypotheses:
        raise DataError("no hypotheses to score")
    for i, r in enumerate(refs):
        _texts(r, f"references[{i}]")
        if not r:
            raise DataError(f"references[{i}] is empty; give at least one reference text")
    if normalize is not None:
        hypotheses = [normalize(h) for h in hypotheses]
        refs = [[normalize(t) for t in r] for r in refs]
    width = max(len(r) for r in refs)   # sacrebleu takes reference streams, one text per hypothesis in each
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(width)]
    return {"bleu": float(sacrebleu.corpus_bleu(hypotheses, streams).score),
            "chrf": float(sacrebleu.corpus_chrf(hypotheses, streams).score),
            "exact_match": float(np.mean([h.strip() in [t.strip() for t in r] for h, r in zip(hypotheses, refs)]))}


def _texts(values, what):
    values = list(values)
    bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        raise DataError(f"{what}[{bad[0]}] is a {type(values[bad[0]]).__name__} ({values[bad[0]]!r}); give strings")
    return values


def compute(task, y_true, scores):
    return regression_metrics(y_true, scores) if task == "regression" else classification_metrics(y_true, scores)
