"""ftkit.analysis: linear CKA, weight snapshots and changes, group features, in both frameworks."""
import numpy as np
import pytest

import ftkit
from ftkit import analysis

GROUPS = ["stem", "blocks_2_6", "blocks_7_13", "blocks_14_18", "head"]


def _direct_cka(X, Y):
    """Kornblith et al.'s definition through centred Gram matrices: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))."""
    n = len(X)
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return np.trace(K @ L) / np.sqrt(np.trace(K @ K) * np.trace(L @ L))


@pytest.mark.parametrize("n,d", [(50, 8), (12, 40)])   # both ways of computing it (N >= D and N < D)
def test_linear_cka_properties(n, d):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d)) + 3.0          # an offset: CKA centres the features itself
    Y = np.tanh(X @ rng.normal(size=(d, d + 3))) + rng.normal(size=(n, d + 3))
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    assert analysis.linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    assert analysis.linear_cka(X, X @ Q) == pytest.approx(1.0, abs=1e-10)        # a rotation
    assert analysis.linear_cka(X, 7.5 * X - 2.0) == pytest.approx(1.0, abs=1e-12)  # scale (and shift)
    assert analysis.linear_cka(X, Y) == pytest.approx(_direct_cka(X, Y), rel=1e-10)
    assert analysis.linear_cka(X @ Q, 0.1 * Y) == pytest.approx(analysis.linear_cka(X, Y), rel=1e-10)
    assert 0.0 <= analysis.linear_cka(X, Y) <= 1.0


def test_linear_cka_of_unrelated_features_is_low():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(500, 5)), rng.normal(size=(500, 5))
    assert analysis.linear_cka(X, Y) < 0.1


def test_feature_similarity_per_group_and_bad_inputs():
    rng = np.random.default_rng(2)
    a = {"stem": rng.normal(size=(20, 4)), "head": rng.normal(size=(20, 3))}
    b = {"stem": a["stem"] * 2, "head": rng.normal(size=(20, 3))}
    sim = analysis.feature_similarity(a, b)
    assert list(sim) == ["stem", "head"] and sim["stem"] == pytest.approx(1.0) and sim["head"] < 1.0
    with pytest.raises(ftkit.DataError, match="rows"):
        analysis.linear_cka(a["stem"], a["stem"][:10])
    with pytest.raises(ftkit.ConfigError, match="groups"):
        analysis.feature_similarity(a, {"stem": a["stem"]})


@pytest.fixture(scope="module")
def imagenet():
    """The same pre-trained MobileNetV2 (its ImageNet head too) in both frameworks, at 32 px."""
    return {fw: ftkit.load_model("mobilenet_v2", framework=fw, image_size=32, verbose=False) for fw in ("torch", "tf")}


def test_snapshot_holds_the_same_tensors_in_both_frameworks(imagenet):
    snaps = {fw: analysis.snapshot(m) for fw, m in imagenet.items()}
    t, k = snaps["torch"], snaps["tf"]
    assert list(t) == list(k) == GROUPS
    for g in GROUPS:
        assert [a.size for a in t[g]] == [b.size for b in k[g]], g
        # the same pre-trained weights, laid out differently: each tensor has the same norm
        np.testing.assert_allclose([np.linalg.norm(a) for a in t[g]], [np.linalg.norm(b) for b in k[g]], rtol=1e-5)
    assert [sum(a.size for a in t[g]) for g in GROUPS] == imagenet["torch"].param_counts()


def test_group_features_agree_between_frameworks(imagenet, digits_small):
    images = digits_small.test.x[:24]
    feats = {fw: analysis.group_features(m, images, batch_size=10) for fw, m in imagenet.items()}
    t, k = feats["torch"], feats["tf"]
    assert list(t) == list(k) == GROUPS
    widths = {"stem": 16, "blocks_2_6": 32, "blocks_7_13": 96, "blocks_14_18": 1280, "head": 1000}
    for g in GROUPS:
        assert t[g].shape == k[g].shape == (24, widths[g]) and t[g].dtype == k[g].dtype == np.float32
        scale, diff = np.abs(t[g]).max(), np.abs(t[g] - k[g]).max()
        assert diff < 1e-4 * scale, f"{g}: max |torch - tf| {diff:.2e} at feature scale {scale:.2f}"
        assert analysis.feature_similarity(t, k)[g] > 0.9999


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_group_features_are_the_prediction_in_inference_mode(framework, digits_small):
    """The head's output is the logits ftkit.predict sees (same preprocessing), in inference mode:
    an image's features do not depend on the batch it is in, and a torch model keeps its own mode."""
    model = ftkit.load_model("mobilenet_v2", framework=framework, num_classes=10, image_size=32, verbose=False)
    feats = analysis.group_features(model, digits_small.test, batch_size=16)
    logits = feats["head"].astype(np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(probs, ftkit.predict(model, digits_small), atol=1e-5)
    if framework == "torch":
        model.native.train()
    alone = analysis.group_features(model, digits_small.test.x[:3], batch_size=3)
    for g in GROUPS:
        np.testing.assert_allclose(alone[g], feats[g][:3], rtol=1e-4, atol=1e-5 * np.abs(feats[g]).max())
    if framework == "torch":
        assert model.native.training
    scaled = analysis.group_features(model, digits_small.test.x[:3] / 255.0)   # images in 0..1 are fine too
    np.testing.assert_allclose(scaled["head"], alone["head"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ftkit.DataError, match="shape"):
        analysis.group_features(model, np.zeros((4, 3, 32, 32), np.uint8))


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_weight_change_is_zero_where_frozen_and_positive_where_trained(framework, digits_small):
    model = ftkit.load_model("mobilenet_v2", framework=framework, num_classes=10, image_size=32, verbose=False)
    model.init_head(3)   # what the first run does with seed=3, so the head's change is training alone
    before = analysis.snapshot(model)
    assert analysis.weight_change(model, before) == {g: 0.0 for g in GROUPS}
    ftkit.finetune(model, digits_small, strategy="partial", trainable_groups=2, epochs=1, lr=1e-3, seed=3,
                   progress=False)
    change = analysis.weight_change(model, before)
    assert list(change) == GROUPS
    assert [change[g] for g in GROUPS[:3]] == [0.0, 0.0, 0.0], change
    assert all(0 < change[g] < 1 for g in GROUPS[3:]), change
    w, w0 = np.concatenate([a.ravel() for a in analysis.snapshot(model)["head"]]), \
        np.concatenate([a.ravel() for a in before["head"]])
    assert change["head"] == pytest.approx(np.linalg.norm(w - w0) / np.linalg.norm(w0), rel=1e-6)
    with pytest.raises(ftkit.ConfigError, match="groups"):
        analysis.weight_change(model, {"stem": before["stem"]})


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_snapshot_with_statistics_sees_batchnorm_statistics(framework):
    """statistics=True adds BatchNorm's running statistics, which the plain snapshot leaves out."""
    model = ftkit.load_model("mobilenet_v2", framework=framework, image_size=32, verbose=False)
    plain, full = analysis.snapshot(model), analysis.snapshot(model, statistics=True)
    assert all(len(full[g]) > len(plain[g]) for g in GROUPS[:4]) and len(full["head"]) == len(plain["head"])
    if framework == "torch":
        import torch
        bn = next(s for m in model.groups[0].members for s in m.modules() if isinstance(s, torch.nn.BatchNorm2d))
        with torch.no_grad():
            bn.running_mean += 0.5
    else:
        import keras
        from ftkit.backends.tf.models import sublayers
        bn = next(s for m in model.groups[0].members for s in sublayers(m)
                  if isinstance(s, keras.layers.BatchNormalization))
        bn.moving_mean.assign(bn.moving_mean + 0.5)
    assert analysis.weight_change(model, plain)["stem"] == 0.0
    change = analysis.weight_change(model, full, statistics=True)
    assert change["stem"] > 0 and [change[g] for g in GROUPS[1:]] == [0.0] * 4, change
    with pytest.raises(ftkit.ConfigError, match="statistics"):
        analysis.weight_change(model, full)
    with pytest.raises(ftkit.ConfigError, match="statistics"):
        analysis.snapshot(model, statistics="yes")


def _tiny_convnet(framework):
    """A user's own small convnet on 8x8 grey images, wrapped with two groups."""
    if framework == "torch":
        import torch
        torch.manual_seed(0)
        conv, head = torch.nn.Conv2d(1, 4, 3), torch.nn.Linear(4, 3)
        net = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), head)
    else:
        import keras
        keras.utils.set_random_seed(0)
        conv, head = keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Dense(3)
        inputs = keras.Input((8, 8, 1))
        net = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(conv(inputs))))
    return ftkit.wrap_model(net, [("conv", [conv]), ("head", [head])], num_classes=3)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_a_wrapped_model_in_both(framework, digits_small):
    model = _tiny_convnet(framework)
    feats = analysis.group_features(model, digits_small.test.x[:5])
    assert {g: f.shape for g, f in feats.items()} == {"conv": (5, 4), "head": (5, 3)}
    assert [a.size for a in analysis.snapshot(model)["conv"]] == [36, 4]
