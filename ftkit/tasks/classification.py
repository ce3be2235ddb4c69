"""Classification and regression on the task seam: one row per example, one output per row."""
import numpy as np

from .. import metrics as _metrics
from ..errors import DataError
from . import Encoded, Task


def encode_inputs(model, x):
    """A split's inputs as NumPy: images as given (N, H, W[, C]), token ids for texts, float32 rows."""
    if model.modality == "text":
        from ..text import tokenize
        return tokenize(model, x)
    if model.modality == "tabular":
        return np.asarray(x, dtype=np.float32)
    return np.asarray(x)


def softmax(logits):
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return (z / z.sum(-1, keepdims=True)).astype(np.float32)


class Classification(Task):
    """Labels 0..classes-1; cross-entropy over the logits; class probabilities; accuracy, macro
    precision/recall/F1, AUC-ROC, ECE and the confusion matrix (ftkit.metrics)."""
    name = "classification"
    loss = "cross_entropy"
    counts_correct = True
    monitors = ("val_accuracy",)
    per_class = True

    def check_split(self, dataset, which, split, num_classes):
        y, where = np.asarray(split.y), f"dataset {dataset!r}: {which!r}"
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where} labels must be integers, got {y.dtype}")
        bad = y[(y < 0) | (y >= num_classes)]
        if bad.size:
            raise DataError(f"{where} has label {int(bad[0])} outside 0..{num_classes - 1} ({num_classes} classes)")

    def check(self, model, data):
        top = int(max(np.max(s.y) for s in data.splits.values()))
        if top >= model.num_classes:
            raise DataError(f"dataset {data.name!r} has label {top}, outside the model's num_classes="
                            f"{model.num_classes} (labels must be 0..{model.num_classes - 1})")

    def encode(self, model, split):
        return Encoded(encode_inputs(model, split.x), np.asarray(split.y, dtype=np.int64))

    def outputs(self, logits, encoded, split):
        return softmax(logits)

    def metrics(self, split, outputs, encoded=None):
        return _metrics.classification_metrics(split.y, outputs)


class Regression(Task):
    """One number per example; squared error; MSE, RMSE, MAE and R²."""
    name = "regression"
    loss = "mse"

    def check_split(self, dataset, which, split, num_classes):
        from ..data import _finite, _numeric
        where = f"dataset {dataset!r}: {which}"
        _numeric(np.asarray(split.y), f"{where} y", "regression targets must be numbers (integers or floats)")
        if np.asarray(split.y).dtype.kind == "f":
            _finite(np.asarray(split.y), f"{where} y", "regression targets must be finite numbers")

    def encode(self, model, split):
        return Encoded(encode_inputs(model, split.x), np.asarray(split.y, dtype=np.float32))

    def outputs(self, logits, encoded, split):
        return np.asarray(logits, dtype=np.float32).reshape(len(logits), -1)[:, 0]

    def metrics(self, split, outputs, encoded=None):
        return _metrics.regression_metrics(split.y, outputs)
