"""load_model(..., task="regression"): a pre-trained image model with a one-output head learns a number."""
import numpy as np
import pytest

import ftkit
from ftkit import ConfigError


def digit_values(digits, n_train=240, n_eval=100):
    """The digits images with their value as a number (standardised: 0 -> -1.57, 9 -> 1.57) to predict."""
    def pair(split, n):
        s = digits.splits[split]
        return s.x[:n], ((s.y[:n] - 4.5) / 2.87).astype(np.float32)
    return ftkit.Dataset.from_arrays("digit_values", pair("train", n_train), pair("val", n_eval),
                                     pair("test", n_eval), task="regression")


@pytest.mark.parametrize("framework", ["torch", pytest.param("tf", marks=pytest.mark.slow)])
def test_a_regression_head_learns_the_digit_value(framework, digits, tmp_path):
    data = digit_values(digits)
    model = ftkit.load_model("mobilenet_v2", framework=framework, task="regression", image_size=32, verbose=False)
    assert (model.task, model.num_classes, model.original_head) == ("regression", 1, None)
    before = ftkit.evaluate(model, data, "test")
    run = ftkit.finetune(model, data, strategy="partial", trainable_groups=2, epochs=3, batch_size=16, lr=3e-4,
                         progress=False)
    after = ftkit.evaluate(model, data, "test")
    print(framework, before, after)
    assert set(after) == {"loss", "mse", "rmse", "mae", "r2"}
    assert after["loss"] == pytest.approx(after["mse"], rel=1e-4)   # trained with the mean squared error
    # measured: the MSE goes from about 1.1 to 0.62 (torch) and 0.55 (tf); R² from about 0 to 0.42 and 0.49
    assert after["mse"] < 0.75 * before["mse"] and after["r2"] > 0.25, (before, after)
    assert "val_r2" in run.history["epochs"][-1]
    pred = model.predict(data.test.x[:5])
    assert pred.shape == (5,) and np.all(np.isfinite(pred))
    with pytest.raises(ConfigError, match=r"is for task 'regression' \(no classes\)"):
        model.top_k(data.test.x[:2])
    saved = ftkit.load_run(run.save(str(tmp_path / "run")))   # a regression run loads back as one
    assert saved.model.task == "regression"
    np.testing.assert_allclose(saved.model.predict(data.test.x[:5]), pred, rtol=1e-4, atol=1e-5)


def test_regression_takes_one_output():
    with pytest.raises(ConfigError, match="a regression model has one output"):
        ftkit.load_model("mobilenet_v2", task="regression", num_classes=10, verbose=False)
    with pytest.raises(ConfigError, match="task='ranking' is not valid"):
        ftkit.load_model("mobilenet_v2", task="ranking", verbose=False)
