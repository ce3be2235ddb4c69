"""Calibration: expected calibration error (ECE) and the reliability diagram's data (ftkit.metrics)."""
import numpy as np
import pytest

import ftkit
from ftkit import ConfigError, DataError
from ftkit.metrics import calibration


def test_a_perfectly_calibrated_model_has_zero_ece():
    # confidence 0.8 everywhere and 8 of 10 right
    probs = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    out = calibration(y, probs)
    assert out["ece"] == pytest.approx(0.0, abs=1e-12)
    assert out["count"].sum() == 10 and out["count"][11] == 10   # 0.8 is in (11/15, 12/15]


def test_confident_and_always_wrong_gives_the_confidence():
    probs = np.tile([0.1, 0.9, 0.0], (6, 1))
    out = calibration(np.zeros(6, dtype=np.int64), probs)
    assert out["ece"] == pytest.approx(0.9)
    assert np.nanmax(out["accuracy"]) == 0.0


def test_a_two_bin_example_computed_by_hand():
    # bins [0, 0.5] and (0.5, 1]; confidence = the top probability, predicted = its class
    probs = np.array([[0.40, 0.30, 0.30],    # conf 0.40, predicts 0, label 0: right   -> bin 1
                      [0.45, 0.35, 0.20],    # conf 0.45, predicts 0, label 2: wrong   -> bin 1
                      [0.90, 0.05, 0.05],    # conf 0.90, right                        -> bin 2
                      [0.60, 0.30, 0.10],    # conf 0.60, predicts 0, label 1: wrong   -> bin 2
                      [0.10, 0.80, 0.10]])   # conf 0.80, predicts 1, label 1: right   -> bin 2
    y = np.array([0, 2, 0, 1, 1])
    # bin 1: 2 examples, accuracy 1/2, confidence (0.40 + 0.45) / 2 = 0.425 -> 2/5 * |0.5 - 0.425| = 0.03
    # bin 2: 3 examples, accuracy 2/3, confidence (0.9 + 0.6 + 0.8) / 3   -> 3/5 * |2/3 - 2.3/3| = 0.06
    out = calibration(y, probs, n_bins=2)
    assert out["ece"] == pytest.approx(0.09)
    np.testing.assert_allclose(out["edges"], [0.0, 0.5, 1.0])
    assert out["count"].tolist() == [2, 3]
    np.testing.assert_allclose(out["accuracy"], [0.5, 2 / 3])
    np.testing.assert_allclose(out["confidence"], [0.425, 2.3 / 3])


def test_an_edge_belongs_to_the_bin_below_and_empty_bins_are_nan():
    out = calibration(np.array([0, 1]), np.array([[0.5, 0.5], [0.0, 1.0]]), n_bins=4)
    assert out["count"].tolist() == [0, 1, 0, 1]   # 0.5 in (0.25, 0.5], 1.0 in (0.75, 1]
    assert np.isnan(out["accuracy"][0]) and np.isnan(out["confidence"][2])
    # bin 2: 1 of 2 examples, conf 0.5, right -> 1/2 * |1 - 0.5|; bin 4: conf 1.0, right -> 0
    assert out["ece"] == pytest.approx(0.25)


@pytest.mark.parametrize("n_bins", [1, 5, 15])
def test_agrees_with_torchmetrics(n_bins):
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(600, 10)) * 3
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    y = np.where(rng.random(600) < 0.4, probs.argmax(1), rng.integers(0, 10, 600))   # overconfident: right ~46%
    ours = calibration(y, probs, n_bins=n_bins)
    theirs = multiclass_calibration_error(torch.from_numpy(probs), torch.from_numpy(y), num_classes=10,
                                          n_bins=n_bins, norm="l1")
    assert ours["ece"] == pytest.approx(float(theirs), abs=1e-6)
    assert ours["ece"] > 0.01 and ours["count"].sum() == 600


def test_bad_inputs_are_refused():
    y, probs = np.array([0, 1]), np.array([[0.7, 0.3], [0.2, 0.8]])
    cases = [((y, [[1.2, -0.2], [0.2, 0.8]]), DataError, r"probs\[0, 0\] is 1.2.*\[0, 1\]"),
             ((y, [[0.7, 0.3], [np.nan, 0.8]]), DataError, r"probs\[1, 0\] is nan"),
             ((y, [[0.7, 0.7], [0.2, 0.8]]), DataError, "row 0 sums to 1.4"),
             ((y, [0.7, 0.3]), DataError, r"\(N, classes\) array"),
             ((np.array([0, 2]), probs), DataError, "label 2, outside 0..1"),
             ((np.array([0.0, 1.0]), probs), DataError, "one integer label per row"),
             ((np.array([0, 1, 1]), probs), DataError, "one integer label per row"),
             ((y, probs, 0), ConfigError, "n_bins=0 must be a whole number >= 1"),
             ((y, probs, True), ConfigError, "n_bins=True")]
    for args, error, words in cases:
        with pytest.raises(error, match=words):
            calibration(*args)


def test_evaluate_reports_the_ece_of_its_predictions(digits_small):
    model = ftkit.load_model("mobilenet_v2", framework="torch", num_classes=10, image_size=32, verbose=False)
    ftkit.finetune(model, digits_small, epochs=1, batch_size=16, progress=False)
    m = ftkit.evaluate(model, digits_small, "test")
    probs = ftkit.predict(model, digits_small, "test")
    assert m["ece"] == pytest.approx(calibration(digits_small.test.y, probs)["ece"]) and 0 < m["ece"] < 1
    assert "calibration" in dir(ftkit.metrics)   # the reliability diagram's data, from the public API
