"""Gradient checkpointing (FineTuneConfig.grad_checkpointing): the same training step, really recomputed.

Two kinds of evidence, in both frameworks:
* one optimizer step with checkpointing leaves every weight (BatchNorm statistics included) where the
  step without it does: the gradients are the same;
* a trained group's forward pass runs twice per step with checkpointing (forward, then recomputation in
  the backward pass) and once without it, and a frozen group's runs once either way: the option does
  something, so a silent no-op fails here.
"""
import numpy as np
import pytest

import ftkit
from ftkit import ConfigError, FineTuneConfig

# plain SGD: the step moves each weight by lr * gradient, so equal steps mean equal gradients
ONE_STEP = dict(epochs=1, max_steps_per_epoch=1, batch_size=16, optimizer="sgd", momentum=0.0, weight_decay=0.0,
                lr=0.1, progress=False)


def one_step_each_way(model, data, **changes):
    """The weights after one step without, then with, checkpointing, both from the same start."""
    model.init_head(0)
    model.fresh_head = False   # both runs start from this head
    trainer = model.backend.train.Trainer(model, FineTuneConfig(progress=False))
    start = trainer.get_weights()
    after, losses = [], []
    for on in (False, True):
        trainer.set_weights(start)
        run = ftkit.finetune(model, data, FineTuneConfig(**{**ONE_STEP, **changes}, grad_checkpointing=on))
        after.append({k: np.asarray(v, dtype=np.float64) for k, v in trainer.get_weights().items()})
        losses.append(run.history["steps"][0]["loss"])
    start = {k: np.asarray(v, dtype=np.float64) for k, v in start.items()}
    return start, after[0], after[1], losses


def assert_same_step(start, plain, checkpointed):
    moved = [k for k in start if not np.array_equal(start[k], plain[k])]
    assert len(moved) > 20, "the step should move the body's weights and statistics"
    for k in start:   # the update (or the change of a BatchNorm statistic) agrees to float32 rounding
        np.testing.assert_allclose(checkpointed[k] - start[k], plain[k] - start[k], rtol=1e-4, atol=1e-7,
                                   err_msg=k)


@pytest.mark.parametrize("framework", ["torch", pytest.param("tf", marks=pytest.mark.slow)])
def test_a_checkpointed_step_equals_a_plain_one_on_mobilenet(framework, digits_small):
    model = ftkit.load_model("mobilenet_v2", framework=framework, num_classes=10, image_size=32, verbose=False)
    start, plain, checkpointed, losses = one_step_each_way(model, digits_small)
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert_same_step(start, plain, checkpointed)


def test_a_checkpointed_step_equals_a_plain_one_on_minilm_torch():
    # dropout in every encoder layer: the recomputation replays the same random masks
    data = ftkit.load_dataset("rotten_tomatoes", source="offline", verbose=False).subset(8)
    model = ftkit.load_model("minilm", framework="torch", num_classes=2, max_length=16, verbose=False)
    start, plain, checkpointed, losses = one_step_each_way(model, data, strategy="partial", trainable_groups=3)
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert_same_step(start, plain, checkpointed)
    # the frozen groups (embeddings, layers 0-1) did not move
    assert all(np.array_equal(start[k], checkpointed[k]) for k in start if "embeddings" in k or ".layer.0." in k)


def torch_forward_counts(model, members, config, data):
    """How often each of ``members`` runs with gradients on (training forward or recomputation) in one step."""
    import torch
    counts = [0] * len(members)

    def counter(i):
        def hook(module, inputs):
            counts[i] += torch.is_grad_enabled()   # validation runs without gradients
        return hook

    hooks = [m.register_forward_pre_hook(counter(i)) for i, m in enumerate(members)]
    try:
        ftkit.finetune(model, data, config)
    finally:
        for h in hooks:
            h.remove()
    return counts


def test_torch_recomputes_the_trained_groups_and_only_them(digits_small):
    model = ftkit.load_model("mobilenet_v2", framework="torch", num_classes=10, image_size=32, verbose=False)
    blocks = model.native.body[0]
    trained, frozen = blocks[16], blocks[3]   # in groups blocks_14_18 (trains) and blocks_2_6 (frozen)
    config = FineTuneConfig(**ONE_STEP, strategy="partial", trainable_groups=2)
    assert torch_forward_counts(model, [trained, frozen], config, digits_small) == [1, 1]
    on = config.replace(grad_checkpointing=True)
    assert torch_forward_counts(model, [trained, frozen], on, digits_small) == [2, 1]


def test_torch_minilm_recomputes_its_trained_layers():
    data = ftkit.load_dataset("rotten_tomatoes", source="offline", verbose=False).subset(8)
    model = ftkit.load_model("minilm", framework="torch", num_classes=2, max_length=16, verbose=False)
    layers = model.native.body.encoder.encoder.layer
    # transformers recomputes a layer's forward (not its __call__): count a module inside each layer
    inner = [layers[5].intermediate, layers[0].intermediate]   # layers_4_5 trains, layers_0_1 is frozen
    config = FineTuneConfig(**ONE_STEP, strategy="partial", trainable_groups=2)
    assert torch_forward_counts(model, inner, config, data) == [1, 1]
    assert torch_forward_counts(model, inner, config.replace(grad_checkpointing=True), data) == [2, 1]
    assert not model.native.body.encoder.is_activation_checkpointing   # switched off after each forward


def counting_tf_model():
    """A tiny Keras convnet whose stem and block each end with a layer that counts its training calls."""
    import keras

    class Count(keras.layers.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.calls = 0

        def call(self, x, training=None):
            self.calls += bool(training)   # Python runs while TensorFlow traces the step: once per use in the graph
            return x

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    stem = keras.Sequential([keras.layers.Conv2D(8, 3, padding="same"), keras.layers.BatchNormalization(),
                             keras.layers.ReLU(), Count(name="stem_count")], name="stem")
    block = keras.Sequential([keras.layers.Conv2D(16, 3, padding="same"), keras.layers.BatchNormalization(),
                              keras.layers.ReLU(), Count(name="block_count")], name="block")
    body = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(block(stem(inp))))
    head = keras.Sequential([keras.layers.Dense(10)], name="head")
    head.build((None, 16))
    native = keras.Model(inp, head(body(inp)))
    model = ftkit.wrap_model(native, [("stem", [stem]), ("block", [block]), ("head", [head])], body=body, head=head,
                             num_classes=10, name="counting")
    return model, stem.get_layer("stem_count"), block.get_layer("block_count")


@pytest.mark.parametrize("on", [False, True])
def test_tf_recomputes_the_trained_groups_and_only_them(on, digits_small):
    model, stem_count, block_count = counting_tf_model()
    stem_count.calls = block_count.calls = 0
    ftkit.finetune(model, digits_small, FineTuneConfig(**ONE_STEP, strategy="partial", trainable_groups=2,
                                                grad_checkpointing=on))
    # the traced step: the block (trained) appears twice with checkpointing (forward + recomputation)
    assert (stem_count.calls, block_count.calls) == ((1, 2) if on else (1, 1))


class NotStarted(ftkit.Callback):
    """A refusal must come before training: this fails the test if a run starts."""

    def on_train_begin(self, run):
        raise AssertionError("the run started before the setting was refused")


def refused(model, data, words, **config):
    with pytest.raises(ConfigError, match=words):
        ftkit.finetune(model, data, grad_checkpointing=True, progress=False, callbacks=[NotStarted()], **config)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_checkpointing_without_a_trained_body_group_is_refused(framework, digits_small):
    model = ftkit.load_model("mobilenet_v2", framework=framework, num_classes=10, image_size=32, verbose=False)
    for strategy in ("head_only", "feature_extraction"):   # only the head trains: nothing to recompute
        refused(model, digits_small, f"strategy='{strategy}' trains no body group", strategy=strategy)


def test_torch_refuses_a_member_it_cannot_reach(digits_small):
    from torch import nn

    class Twice(nn.Module):   # its own forward: ftkit cannot call its children for it
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(x).relu()

    body = nn.Sequential(Twice(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = nn.Linear(4, 10)
    model = ftkit.wrap_model(nn.Sequential(body, head), [("conv", [body[0].conv]), ("head", [head])], body=body,
                             head=head, num_classes=10)
    refused(model, digits_small, "Conv2d in group 'conv' is not reached from the body")


def test_tf_refuses_layers_in_a_nested_model_and_dropout(digits_small):
    import keras
    inp = keras.Input((8, 8, 1))
    inner = keras.Sequential([keras.layers.Conv2D(4, 3, padding="same")], name="inner")
    body = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(inner(inp)))
    head = keras.Sequential([keras.layers.Dense(10)], name="head")
    head.build((None, 4))
    nested = ftkit.wrap_model(keras.Model(inp, head(body(inp))), [("conv", [inner.layers[0]]), ("head", [head])],
                              body=body, head=head, num_classes=10)
    refused(nested, digits_small, "is not a layer of the body.*nested model")
    inp = keras.Input((8, 8, 1))
    block = keras.Sequential([keras.layers.Conv2D(4, 3, padding="same"), keras.layers.Dropout(0.3)], name="block")
    body = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(block(inp)))
    head = keras.Sequential([keras.layers.Dense(10)], name="head")
    head.build((None, 4))
    dropped = ftkit.wrap_model(keras.Model(inp, head(body(inp))), [("block", [block]), ("head", [head])], body=body,
                               head=head, num_classes=10)
    refused(dropped, digits_small, "group 'block' has dropout")


def test_measure_reports_speed_and_peak_memory_from_a_process_of_its_own():
    # what notebook 11 compares (the figures themselves are measured there, not asserted here)
    out = ftkit.efficiency.measure("mobilenet_v2", "digits", FineTuneConfig(batch_size=8, grad_checkpointing=True),
                                   subset=4, steps=3, image_size=32)
    assert out["device"] == ftkit.device_info("torch")["device"] and out["steps"] == 3
    assert out["samples_per_sec"] > 0 and out["peak_memory_mb"] > 10
    assert ("resident memory" if out["device"] == "cpu" else "GPU memory") in out["memory"]
    with pytest.raises(ConfigError, match="steps=1"):
        ftkit.efficiency.measure("mobilenet_v2", "digits", steps=1)
