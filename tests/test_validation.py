"""Bad input is refused before any training starts, with a message naming the field and valid values."""
import numpy as np
import pytest

import ftkit
from ftkit import ConfigError, DataError


@pytest.fixture(scope="module")
def model():
    return ftkit.load_model("mobilenet_v2", framework="torch", num_classes=10, image_size=32, verbose=False)


def weights(model):
    return {k: v.clone() for k, v in model.native.state_dict().items()}


def unchanged(model, before):
    return all(np.array_equal(before[k].numpy(), v.numpy()) for k, v in model.native.state_dict().items())


@pytest.mark.parametrize("call, words", [
    (lambda: ftkit.load_model("vgg99"), ["model='vgg99'", "mobilenet_v2", "minilm"]),
    (lambda: ftkit.load_dataset("cifar1000"), ["dataset='cifar1000'", "fashion_mnist", "rotten_tomatoes"]),
    (lambda: ftkit.load_model("mobilenet_v2", framework="jax"), ["framework='jax'", "torch", "tf"]),
])
def test_unknown_names_list_the_valid_ones(call, words):
    with pytest.raises(ConfigError) as e:
        call()
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("changes, words", [
    (dict(strategy="freeze_some"), ["strategy='freeze_some'", "full", "partial", "feature_extraction", "head_only",
                                    "progressive"]),
    (dict(schedule="warmish"), ["schedule='warmish'", "cosine", "onecycle", "cyclic"]),
    (dict(lr=0.0), ["lr=0.0", "> 0"]),
    (dict(lr=-1e-3), ["lr=-0.001"]),
    (dict(strategy="partial", trainable_groups=9), ["trainable_groups=9", "5 layer groups"]),
    (dict(group_lrs=[1e-3, 1e-3]), ["group_lrs has 2 values", "5 groups"]),
    (dict(optimizer="lion"), ["optimizer='lion'", "adamw", "sgd"]),
    (dict(epochs=0), ["epochs=0"]),
    (dict(dropout=1.5), ["dropout=1.5"]),
    (dict(strategy="feature_extraction", augment=True), ["augment=True", "head_only"]),
])
def test_bad_config_is_refused_before_training(model, digits_small, changes, words):
    before = weights(model)
    n_runs = len(ftkit.session_runs())
    with pytest.raises(ConfigError) as e:
        ftkit.finetune(model, digits_small, ftkit.FineTuneConfig(progress=False, **changes))
    for w in words:
        assert w in str(e.value)
    assert unchanged(model, before) and len(ftkit.session_runs()) == n_runs


def test_unknown_config_field_is_refused():
    with pytest.raises(ConfigError, match="unknown config field"):
        ftkit.FineTuneConfig().replace(learning_rate=1e-3)


def test_labels_outside_num_classes(digits_small):
    small = ftkit.load_model("mobilenet_v2", framework="torch", num_classes=5, image_size=32, verbose=False)
    before = weights(small)
    with pytest.raises(DataError, match="outside the model's num_classes=5"):
        ftkit.finetune(small, digits_small, progress=False)
    assert unchanged(small, before)


def test_empty_split_and_bad_labels_and_wrong_shapes():
    x = np.zeros((10, 28, 28), np.uint8)
    y = np.arange(10) % 2
    with pytest.raises(DataError, match="'val' split is empty"):
        ftkit.Dataset.from_arrays("d", (x, y), (x[:0], y[:0]))
    with pytest.raises(DataError, match="label 7 outside 0..1"):
        ftkit.Dataset.from_arrays("d", (x, y), (x, np.full(10, 7)), class_names=["a", "b"])
    with pytest.raises(DataError, match=r"images must have shape .* got \(10, 28, 28, 2\)"):
        ftkit.Dataset.from_arrays("d", (np.zeros((10, 28, 28, 2), np.uint8), y), (x, y))
    with pytest.raises(DataError, match=r"got \(10, 4, 4\)"):
        ftkit.Dataset.from_arrays("d", (np.zeros((10, 4, 4), np.uint8), y), (x, y))


def test_rows_of_numbers_to_an_image_model(model):
    rows = ftkit.Dataset.from_arrays("rows", (np.zeros((10, 5), np.float32), np.arange(10) % 2),
                                     (np.zeros((4, 5), np.float32), np.arange(4) % 2))
    with pytest.raises(DataError, match="takes image inputs but dataset 'rows' holds tabular"):
        ftkit.finetune(model, rows, progress=False)


def test_wrap_model_checks_its_input():
    import torch
    with pytest.raises(ConfigError, match="cannot wrap a dict"):
        ftkit.wrap_model({}, [("head", [])], num_classes=2)
    net = torch.nn.Linear(3, 2)
    with pytest.raises(ConfigError, match="is not an nn.Module"):
        ftkit.wrap_model(net, [("head", [net.weight])], num_classes=2)
    with pytest.raises(ConfigError, match="num_classes=None"):
        ftkit.wrap_model(net, [("head", [net])])
    with pytest.raises(ConfigError, match="give both body and head"):
        ftkit.wrap_model(net, [("head", [net])], num_classes=2, body=net)


def test_text_data_to_an_image_model(model):
    texts = ["good film", "bad film"] * 4
    ds = ftkit.Dataset.from_arrays("t", (texts, np.arange(8) % 2), (texts, np.arange(8) % 2))
    with pytest.raises(DataError, match="takes image inputs"):
        ftkit.finetune(model, ds, progress=False)


def test_offline_hub_names_fail_at_once_naming_the_offline_models(monkeypatch):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    import time
    t = time.perf_counter()
    for name in ("resnet50", "bert-base-uncased"):
        with pytest.raises(ftkit.OfflineError) as e:
            ftkit.load_model(name, num_classes=2)
        assert "mobilenet_v2" in str(e.value) and "minilm" in str(e.value)
    assert time.perf_counter() - t < 5
