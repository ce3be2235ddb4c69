"""The same config means the same run shape in both frameworks: groups, sizes, masks and LRs."""
import pytest

import ftkit


@pytest.fixture(scope="module")
def models():
    return {fw: ftkit.load_model("mobilenet_v2", framework=fw, num_classes=10, image_size=32, verbose=False)
            for fw in ("torch", "tf")}


def test_same_groups_and_parameter_counts(models):
    t, k = models["torch"], models["tf"]
    assert t.group_names == k.group_names == ["stem", "blocks_2_6", "blocks_7_13", "blocks_14_18", "head"]
    assert t.param_counts() == k.param_counts()
    counts = t.param_counts()
    for m in (t, k):  # freezing changes what trains, not what a group holds
        m.freeze()
        assert m.param_counts() == counts and m.trainable_mask() == [False] * 4 + [True]
        m.unfreeze()


def test_same_lr_sequence_and_masks_step_by_step(models, digits_small):
    cfg = ftkit.FineTuneConfig(strategy="progressive", epochs=3, batch_size=20, lr=2e-3, lr_ratio=8.0,
                               schedule="onecycle", warmup_steps=2, grad_accum=2, progress=False)
    runs = {fw: ftkit.finetune(m, digits_small, cfg) for fw, m in models.items()}
    ts, ks = runs["torch"].history, runs["tf"].history
    assert len(ts["steps"]) == len(ks["steps"]) == runs["torch"].total_steps == 3 * 2
    for a, b in zip(ts["steps"], ks["steps"]):
        assert a["lrs"] == pytest.approx(b["lrs"], rel=1e-12)
    assert [e["trainable_mask"] for e in ts["epochs"]] == [e["trainable_mask"] for e in ks["epochs"]]
    assert [e["trainable_params"] for e in ts["epochs"]] == [e["trainable_params"] for e in ks["epochs"]]


def _finite(model):
    import numpy as np
    if model.framework == "torch":
        return all(np.isfinite(v.float().numpy()).all() for v in model.native.state_dict().values())
    return all(np.isfinite(v.numpy()).all() for v in model.native.weights if v.dtype.startswith("float"))


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_divergence_stops_with_finite_weights_in_both(framework, digits_small):
    model = ftkit.load_model("mobilenet_v2", framework=framework, num_classes=10, image_size=32, verbose=False)
    run = ftkit.finetune(model, digits_small, optimizer="sgd", lr=1e8, epochs=3, progress=False)
    assert run.status == "diverged" and "lower learning rate" in run.message and run.kept == "initial"
    assert _finite(model)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_train_accuracy_is_recorded(framework, digits_small):
    model = ftkit.load_model("mobilenet_v2", framework=framework, num_classes=10, image_size=32, verbose=False)
    run = ftkit.finetune(model, digits_small, strategy="head_only", lr=1e-2, epochs=2, progress=False)
    accs = [e["train_accuracy"] for e in run.history["epochs"]]
    assert all(0.0 <= a <= 1.0 for a in accs) and accs[-1] > 0.1  # above chance after two epochs


def _tiny_regressor(framework):
    """A user's own small network on rows of numbers, wrapped with two groups."""
    if framework == "torch":
        import torch
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
        groups = [("hidden", [net[0]]), ("head", [net[2]])]
    else:
        import keras
        keras.utils.set_random_seed(0)
        hidden, out = keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)
        inputs = keras.Input((10,))
        net = keras.Model(inputs, out(hidden(inputs)))
        groups = [("hidden", [hidden]), ("head", [out])]
    return ftkit.wrap_model(net, groups, task="regression", input_spec={"modality": "tabular"})


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_regression_with_a_wrapped_model_in_both(framework):
    import numpy as np
    from sklearn.datasets import load_diabetes
    x, y = load_diabetes(return_X_y=True)
    x, y = x.astype(np.float32), ((y - y.mean()) / y.std()).astype(np.float32)
    data = ftkit.Dataset.from_arrays("diabetes", (x[:300], y[:300]), (x[300:370], y[300:370]),
                                     (x[370:], y[370:]), task="regression")
    model = _tiny_regressor(framework)
    run = ftkit.finetune(model, data, epochs=30, lr=1e-2, batch_size=32, progress=False)
    m = ftkit.evaluate(model, data, "test")
    assert set(m) >= {"mse", "rmse", "mae", "r2"} and m["r2"] > 0.3, m
    assert run.history["epochs"][-1]["val_mse"] < run.history["epochs"][0]["val_mse"]


def test_a_new_head_starts_alike_in_both_frameworks(models, digits_small):
    """Same initialisation rule for the new head (torch's nn.Linear default: uniform in +-1/sqrt(fan_in),
    bias included), so the first losses agree; Keras' Glorot kernel and zero bias started TF higher."""
    import numpy as np
    spread = {}
    for fw, m in models.items():
        m.init_head(0)
        w = ftkit.analysis.snapshot(m)["head"]           # [kernel or weight, bias]
        kernel, bias = (np.abs(a).ravel() for a in w)
        spread[fw] = (kernel.max(), kernel.std(), bias.max())
        assert kernel.max() <= 1 / np.sqrt(1280) + 1e-7 and bias.max() > 0, fw
    (tk, ts, tb), (kk, ks, kb) = spread["torch"], spread["tf"]
    assert 0.9 < ks / ts < 1.1 and 0.8 < kb / tb <= 1.25, spread
    losses = {fw: ftkit.evaluate(m, digits_small, "val")["loss"] for fw, m in models.items()}
    assert abs(losses["torch"] - losses["tf"]) < 0.15, losses
