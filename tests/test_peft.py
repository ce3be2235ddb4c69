"""Parameter-efficient fine-tuning (ftkit.peft): LoRA adapters and BitFit, in both frameworks.

What trains is read from the weights themselves (bitwise before/after) and from the counts each run
reports, against sizes computed here by hand.
"""
import argparse
import os
from collections import OrderedDict

import numpy as np
import pytest

import ftkit
from ftkit import ConfigError, FineTuneConfig

TEXTS = ["a good film", "a bad film", "great acting", "dull and slow", "loved it", "hated it"] * 2
LABELS = [1, 0, 1, 0, 1, 0] * 2
# MiniLM: 6 layers of width 384, 12 attention heads of 32; the new head is a 384 -> 2 linear layer
HIDDEN, LAYERS, HEADS, HEAD = 384, 6, 12, 384 * 2 + 2


@pytest.fixture(scope="module")
def reviews():
    return ftkit.Dataset.from_arrays("reviews", (TEXTS, LABELS), (TEXTS[:6], LABELS[:6]))


def weights(model):
    """Every weight of the model as NumPy arrays, keyed as ftkit saves them. peft keeps a LoRA layer's own
    weights under ``base_layer``; that part is dropped, so a key names the same weight before and after."""
    w = model.backend.train.Trainer(model, FineTuneConfig(progress=False)).get_weights()
    return {k.replace(".base_layer", ""): (v.cpu().numpy() if hasattr(v, "cpu") else np.array(v)) for k, v in w.items()}


def is_lora(key):
    return "lora_" in key


def is_head(key):
    return key.startswith("head")


def is_bias(key):
    return key.endswith((".bias", "/bias", "/beta"))   # torch norms call it bias, Keras beta


def is_statistic(key):
    return any(s in key for s in ("running_", "num_batches", "moving_"))   # BatchNorm's, moved by training


def minilm(framework):
    return ftkit.load_model("minilm", framework=framework, num_classes=2, max_length=16, verbose=False)


def folder_size(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_lora_on_minilm_trains_only_the_adapters_and_saves_only_them(framework, reviews, tmp_path):
    model = minilm(framework)
    before = weights(model)
    run = ftkit.finetune(model, reviews, peft="lora", epochs=1, batch_size=6, lr=1e-2, progress=False)
    after = weights(model)

    # adapters on the query and value projections of the 6 layers (the default), rank 8
    r = 8
    per_adapter = {"torch": r * (HIDDEN + HIDDEN),                 # peft: A (r, 384), B (384, r)
                   "tf": r * (HIDDEN * HEADS + HIDDEN // HEADS)}   # Keras EinsumDense: A (384, 12, r), B (r, 32)
    lora_keys = [k for k in after if is_lora(k)]
    assert len(lora_keys) == LAYERS * 2 * 2
    assert sum("query" in k for k in lora_keys) == sum("value" in k for k in lora_keys) == LAYERS * 2
    trained = run.history["epochs"][0]["trainable_params"]
    assert trained == LAYERS * 2 * per_adapter[framework] + HEAD
    assert run.summary()["trainable_params"] == trained
    assert trained / sum(model.param_counts()) < 0.05

    # every base weight bitwise as it was; every B (which starts at zero) moved; the head trained
    base = [k for k in after if not is_lora(k) and not is_head(k)]
    assert set(base) == {k for k in before if not is_head(k)}
    assert all(np.array_equal(before[k], after[k]) for k in base)
    b_keys = [k for k in lora_keys if "lora_B" in k or "lora_kernel_b" in k]
    assert len(b_keys) == LAYERS * 2 and all(np.any(after[k] != 0) for k in b_keys)
    assert any(not np.array_equal(before[k], after[k]) for k in after if is_head(k))

    # the adapters change the predictions: with every B set back to zero they differ
    probs = model.predict(TEXTS[:6])
    trainer = model.backend.train.Trainer(model, FineTuneConfig(progress=False))
    snapshot = trainer.get_weights()
    trainer.set_weights({k: (v * 0 if ("lora_B" in k or "lora_kernel_b" in k) else v) for k, v in snapshot.items()})
    assert not np.allclose(model.predict(TEXTS[:6]), probs, atol=1e-6)
    trainer.set_weights(snapshot)

    # the saved run holds the adapters and the head (not the 22.7M base weights) and loads back onto
    # the pre-trained model with the same predictions
    run.save(tmp_path / "lora")
    model.backend.io.save_weights(model, str(tmp_path / "all.safetensors"))
    assert folder_size(tmp_path / "lora") * 20 < os.path.getsize(tmp_path / "all.safetensors")
    saved = ftkit.load_run(str(tmp_path / "lora"))
    assert saved.model.lora["paths"] == model.lora["paths"]
    np.testing.assert_array_equal(saved.model.predict(TEXTS[:6]), probs)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_bitfit_on_minilm_trains_only_the_biases(framework, reviews, tmp_path):
    model = minilm(framework)
    before = weights(model)
    run = ftkit.finetune(model, reviews, peft="bitfit", epochs=1, batch_size=6, lr=1e-2, progress=False)
    after = weights(model)
    # per layer: query, key, value, attention output, intermediate (4 x 384), output, two LayerNorms;
    # the embeddings' LayerNorm; the head
    assert run.history["epochs"][0]["trainable_params"] == LAYERS * (7 * HIDDEN + 4 * HIDDEN) + HIDDEN + HEAD
    assert set(after) == set(before)
    body = [k for k in after if not is_head(k)]
    assert all(np.array_equal(before[k], after[k]) for k in body if not is_bias(k))
    assert sum(not np.array_equal(before[k], after[k]) for k in body if is_bias(k)) > LAYERS * 4

    probs = model.predict(TEXTS[:6])
    run.save(tmp_path / "bitfit")
    model.backend.io.save_weights(model, str(tmp_path / "all.safetensors"))
    assert folder_size(tmp_path / "bitfit") * 20 < os.path.getsize(tmp_path / "all.safetensors")
    np.testing.assert_array_equal(ftkit.load_run(str(tmp_path / "bitfit")).model.predict(TEXTS[:6]), probs)


# -- a tiny model: named layers, the same names in both frameworks ------------------------------------------

def tiny(framework):
    """stem: a 3x3 conv (1 -> 4); block: a 1x1 conv (4 -> 4), a depthwise 3x3 conv, a BatchNorm; head 4 -> 10."""
    if framework == "torch":
        import torch
        from torch import nn
        torch.manual_seed(0)
        body = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 4, 3, padding=1), conv2=nn.Conv2d(4, 4, 1),
                                         depthwise=nn.Conv2d(4, 4, 3, padding=1, groups=4), norm=nn.BatchNorm2d(4),
                                         pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten()))
        head = nn.Linear(4, 10)
        native = nn.Sequential(OrderedDict(body=body, head=head))
        groups = [("stem", [body.conv]), ("block", [body.conv2, body.depthwise, body.norm]), ("head", [head])]
    else:
        import keras
        keras.utils.set_random_seed(0)
        layers = dict(conv=keras.layers.Conv2D(4, 3, padding="same", name="conv"),
                      conv2=keras.layers.Conv2D(4, 1, name="conv2"),
                      depthwise=keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise"),
                      norm=keras.layers.BatchNormalization(name="norm"))
        inp = keras.Input((8, 8, 1))
        x = inp
        for layer in layers.values():
            x = layer(x)
        body = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x))
        head = keras.layers.Dense(10, name="head")
        head.build((None, 4))
        native = keras.Model(inp, head(body(inp)))
        groups = [("stem", [layers["conv"]]), ("block", [layers["conv2"], layers["depthwise"], layers["norm"]]),
                  ("head", [head])]
    return ftkit.wrap_model(native, groups, body=body, head=head, num_classes=10, name="tiny")


CONV, CONV2, TINY_HEAD = 1 * 9 + 4, 4 * 1 + 4, 4 * 10 + 10   # per rank: c_in * kh * kw + c_out


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_refused_before_training(framework, digits_small):
    model = tiny(framework)
    cases = [
        (dict(peft="lora"), ["lora_targets=None", "'tiny' has no default", "conv"]),
        (dict(peft="lora", lora_targets=["nope"]), ["'nope' matches no layer", "conv2", "stem, block"]),
        (dict(peft="lora", lora_targets=["depthwise"]), ["'depthwise'", "which LoRA cannot adapt", framework]),
        (dict(peft="lora", lora_targets=["norm"]), ["'norm'", "BatchNorm", "which LoRA cannot adapt"]),
        (dict(peft="lora", lora_targets=["head"]), ["'head' is the new head"]),
        (dict(peft="bitfit", strategy="feature_extraction"), ["peft='bitfit'", "strategy='feature_extraction'",
                                                              "trains no body group"]),
        (dict(peft="lora", lora_targets=["conv"], strategy="partial", trainable_groups=1), ["trains no body group"]),
        (dict(lora_targets=["conv"]), ["lora_targets=['conv'] is used only with peft='lora'"]),
    ]
    for changes, words in cases:
        with pytest.raises(ConfigError) as err:
            ftkit.finetune(model, digits_small, epochs=1, progress=False, **changes)
        for w in words:
            assert w in str(err.value), (changes, str(err.value))
    assert model.lora is None and not model.trained   # nothing was added or trained


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_lora_trains_the_adapters_of_the_trained_groups_once(framework, digits_small):
    model = tiny(framework)
    config = FineTuneConfig(peft="lora", lora_targets=["conv", "block"], strategy="partial", trainable_groups=2,
                            epochs=1, batch_size=16, lr=1e-2, progress=False)
    assert f"{8 * CONV2 + TINY_HEAD:,} of" in model.summary(config)   # counted before the adapters exist
    before = weights(model)
    run = ftkit.finetune(model, digits_small, config)
    first = weights(model)
    # the block (conv2's adapters) and the head train; the stem is frozen, its adapters included
    assert run.history["epochs"][0]["trainable_params"] == 8 * CONV2 + TINY_HEAD
    lora = sorted(k for k in first if is_lora(k))
    assert len(lora) == 4 and sum("conv2" in k for k in lora) == 2
    assert all(np.array_equal(before[k], first[k]) for k in before if not is_head(k) and not is_statistic(k))
    moved = {k for k in lora if np.any(first[k] != 0) and "conv2" in k and ("lora_B" in k or "kernel_b" in k)}
    assert len(moved) == 1
    assert not any(np.any(first[k] != 0) for k in lora if "conv2" not in k and ("lora_B" in k or "kernel_b" in k))

    # a second run with the same settings trains the same adapters further: none are added
    again = ftkit.finetune(model, digits_small, config.replace(strategy="full"))
    second = weights(model)
    assert sorted(k for k in second if is_lora(k)) == lora
    assert again.history["epochs"][0]["trainable_params"] == 8 * (CONV + CONV2) + TINY_HEAD
    assert all(not np.array_equal(first[k], second[k]) for k in lora if "lora_B" in k or "kernel_b" in k)
    # anything else on a model with adapters is refused
    for changes in (dict(peft=None, lora_targets=None), dict(peft="bitfit", lora_targets=None), dict(lora_rank=4),
                    dict(lora_targets=["conv"])):
        with pytest.raises(ConfigError, match="has LoRA adapters from an earlier run"):
            ftkit.finetune(model, digits_small, config.replace(**changes))


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_adapters_come_from_the_seed(framework):
    def adapters(seed):
        model = tiny(framework)
        ftkit.peft.add_lora(model, 4, 8.0, ["conv"], seed)
        return {k: v for k, v in weights(model).items() if is_lora(k)}

    a, b, c = adapters(0), adapters(0), adapters(1)
    assert len(a) == 2 and all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_bitfit_then_a_plain_run(framework, digits_small):
    model = tiny(framework)
    run = ftkit.finetune(model, digits_small, peft="bitfit", epochs=1, batch_size=16, progress=False)
    assert run.history["epochs"][0]["trainable_params"] == 4 + 4 + 4 + 4 + TINY_HEAD   # conv, conv2, depthwise, norm
    plain = ftkit.finetune(model, digits_small, epochs=1, batch_size=16, progress=False)   # BitFit added nothing
    assert plain.history["epochs"][0]["trainable_params"] == sum(model.param_counts())


def test_cli_reads_layer_names_and_numbers():
    from ftkit.cli import _config_args, _config_from
    parser = argparse.ArgumentParser()
    _config_args(parser)
    config = _config_from(parser.parse_args(["--peft", "lora", "--lora-targets", "query,value", "--lora-rank", "4",
                                             "--group-lrs", "1e-5,1e-4"]))
    assert config.peft == "lora" and config.lora_targets == ["query", "value"] and config.lora_rank == 4
    assert config.group_lrs == [1e-5, 1e-4]
    assert _config_from(parser.parse_args(["--lora-targets", "0.1"])).lora_targets == ["0.1"]


def test_mobilenet_default_targets_are_the_same_layers_in_both_frameworks():
    """Every 1x1 convolution of the body: 34 layers, the same adapter sizes in PyTorch and Keras."""
    from torch import nn
    config = FineTuneConfig(peft="lora", lora_rank=4)
    torch_model, tf_model = (ftkit.load_model("mobilenet_v2", framework=fw, num_classes=10, verbose=False)
                             for fw in ("torch", "tf"))
    pointwise = [m for m in torch_model.native.body.modules()
                 if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1]
    expected = sum(4 * (m.in_channels + m.out_channels) for m in pointwise) + 1280 * 10 + 10
    assert len(pointwise) == 34
    for model in (torch_model, tf_model):
        assert len(ftkit.peft.lora_layers(model, None)) == 34
        assert f"{expected:,} of" in model.summary(config)
