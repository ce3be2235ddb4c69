"""Evaluation metrics, computed with scikit-learn (not by hand)."""
import numpy as np
from sklearn import metrics as skm


def classification_metrics(y_true, probs):
    """Accuracy, macro precision/recall/F1, AUC-ROC (one-vs-rest) and the confusion matrix."""
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


def regression_metrics(y_true, y_pred):
    """MSE, RMSE, MAE and R2."""
    mse = float(skm.mean_squared_error(y_true, y_pred))
    return {"mse": mse, "rmse": mse ** 0.5, "mae": float(skm.mean_absolute_error(y_true, y_pred)),
            "r2": float(skm.r2_score(y_true, y_pred))}


def compute(task, y_true, scores):
    return regression_metrics(y_true, scores) if task == "regression" else classification_metrics(y_true, scores)
