"""The TensorFlow (Keras 3) backend: freezing, per-group LRs, BatchNorm, weights I/O, an end-to-end run."""
import numpy as np
import pytest

import ftkit
from ftkit.strategies import plan

pytest.importorskip("tensorflow")
pytest.importorskip("keras_hub")

IMAGE_SIZE = 32


def _group_state(model, trainer):
    """{group name: {weight key: array}}, every weight of the group (BatchNorm moving statistics included)."""
    snap = trainer.get_weights()
    out = {}
    for g in model.groups:
        ids = {id(w) for m in g.members for w in m.weights}
        keys = [k for k, v in ftkit.backends.tf.io.named_weights(model.native).items() if id(v) in ids]
        out[g.name] = {k: snap[k] for k in keys}
    return out


def _bn_stats(state):
    return {k: v for k, v in state.items() if k.endswith(("moving_mean", "moving_variance"))}


@pytest.fixture(scope="module")
def mobilenet():
    model = ftkit.load_model("mobilenet_v2", framework="tf", num_classes=10, image_size=IMAGE_SIZE, verbose=False)
    tr = model.backend.train.Trainer(model, ftkit.FineTuneConfig(progress=False))
    return model, tr.get_weights()


def _fresh(mobilenet):
    model, snapshot = mobilenet
    tr = model.backend.train.Trainer(model, ftkit.FineTuneConfig(progress=False))
    tr.set_weights(snapshot)
    model.unfreeze()
    return model


def test_build_groups_and_counts(mobilenet):
    model, _ = mobilenet
    assert model.group_names == ["stem", "blocks_2_6", "blocks_7_13", "blocks_14_18", "head"]
    counts = model.param_counts()
    # the same parameter counts as torchvision's mobilenet_v2 split the same way (BN statistics not counted)
    assert counts == [1824, 53664, 487040, 1681344, 12810]
    names = [layer.name for layer in model.groups[0].members]
    assert names[:4] == ["Conv1_pad", "Conv1", "bn_Conv1", "Conv1_relu"]
    pads = [l for l in model.body.layers if l.name.endswith("_pad")]
    assert pads and all(tuple(map(tuple, l.padding)) == ((1, 1), (1, 1)) for l in pads)
    bns = [l for l in model.body.layers if l.__class__.__name__ == "BatchNormalization"]
    assert all(l.epsilon == 1e-5 for l in bns)


def test_frozen_batchnorm_runs_in_inference_mode(mobilenet):
    """The Keras trap: trainable=False on BatchNormalization also means inference mode, even with training=True."""
    model = _fresh(mobilenet)
    model.freeze()
    x = np.random.default_rng(0).normal(size=(4, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    before = {l.name: l.moving_mean.numpy().copy() for l in model.body.layers if hasattr(l, "moving_mean")}
    train_out = model.body(x, training=True).numpy()
    infer_out = model.body(x, training=False).numpy()
    np.testing.assert_array_equal(train_out, infer_out)
    for l in model.body.layers:
        if hasattr(l, "moving_mean"):
            np.testing.assert_array_equal(l.moving_mean.numpy(), before[l.name])
    model.unfreeze()
    assert not np.allclose(model.body(x, training=True).numpy(), infer_out)


@pytest.mark.parametrize("strategy", ["full", "partial", "head_only", "feature_extraction", "progressive"])
def test_frozen_groups_unchanged(mobilenet, digits_small, strategy):
    """After a few steps: frozen groups bitwise unchanged, BatchNorm statistics included; trainable ones moved."""
    model = _fresh(mobilenet)
    cfg = ftkit.FineTuneConfig(strategy=strategy, batch_size=16, lr=1e-2, trainable_groups=2, progress=False,
                               augment=strategy != "feature_extraction")
    tr = model.backend.train.Trainer(model, cfg)
    epochs = 2 if strategy == "progressive" else 1
    masks = plan(cfg.replace(epochs=epochs), len(model.groups))
    tr.set_trainable(masks[0])
    if strategy == "feature_extraction":
        tr.cache_features([digits_small.train, digits_small.val])
    for epoch, mask in enumerate(masks):
        tr.set_trainable(mask)
        before = _group_state(model, tr)
        for i, batch in enumerate(tr.batches(digits_small.train, shuffle=True, seed=epoch)):
            assert np.isfinite(tr.train_step(batch, update=True))
            if i == 2:
                break
        after = _group_state(model, tr)
        for g, trainable in zip(model.groups, mask):
            changed = [k for k in before[g.name] if not np.array_equal(before[g.name][k], after[g.name][k])]
            if trainable:
                assert changed, f"{strategy}: trainable group {g.name} did not change"
                if g.name != "head" and strategy != "feature_extraction":
                    assert set(_bn_stats(before[g.name])) & set(changed), f"{g.name}: BN stats did not move"
            else:
                assert not changed, f"{strategy}: frozen group {g.name} changed: {changed[:3]}"
        assert tr.trainable_params() == sum(n for n, m in zip(model.param_counts(), mask) if m)
    loss, logits = tr.predict(digits_small.val)   # the trainer gives logits; the task makes probabilities
    assert np.isfinite(loss) and logits.shape == (len(digits_small.val), 10)
    np.testing.assert_allclose(ftkit.tasks.get("classification").outputs(logits, None, None).sum(1), 1, rtol=1e-5)


def test_each_group_gets_its_own_lr(mobilenet, digits_small):
    """Plain SGD (no momentum, no decay): the update of every weight is its group's LR times its gradient."""
    model = _fresh(mobilenet)
    lrs = [0.01, 0.02, 0.04, 0.08, 0.16]
    cfg = ftkit.FineTuneConfig(optimizer="sgd", momentum=0.0, weight_decay=0.0, batch_size=32, progress=False)
    tr = model.backend.train.Trainer(model, cfg)
    tr.set_trainable([True] * 5)
    tr.set_lrs(lrs)
    batch = next(tr.batches(digits_small.train, shuffle=True, seed=0))
    before = [[v.numpy().copy() for v in vs] for vs in tr._vars]
    tr.train_step(batch, update=False)           # gradients accumulate, no update
    grads = [[a.numpy().copy() for a in accs] for accs in tr._accum]
    assert all(np.array_equal(v.numpy(), b) for vs, bs in zip(tr._vars, before) for v, b in zip(vs, bs))
    tr._step_fns().apply()                          # the update step on exactly those gradients
    for name, lr, vs, bs, gs in zip(model.group_names, lrs, tr._vars, before, grads):
        delta = np.concatenate([(b - v.numpy()).ravel() for v, b in zip(vs, bs)]).astype(np.float64)
        g = np.concatenate([x.ravel() for x in gs]).astype(np.float64)
        measured = (delta @ g) / (g @ g)        # least-squares fit of delta = lr * g
        assert measured == pytest.approx(lr, rel=2e-3), name
        np.testing.assert_allclose(delta, lr * g, atol=1e-6 + 1e-3 * np.abs(lr * g).max())
    assert all(not np.any(a.numpy()) for accs in tr._accum for a in accs)   # accumulators were reset


def test_weight_decay_skips_biases_and_norms(mobilenet):
    model = _fresh(mobilenet)
    tr = model.backend.train.Trainer(model, ftkit.FineTuneConfig(optimizer="adamw", weight_decay=0.1))
    tr._build_optimizers()
    for opt, vs in zip(tr._optimizers, tr._vars):
        assert [opt._use_weight_decay(v) for v in vs] == [len(v.shape) > 1 for v in vs]


def test_gradient_accumulation_and_clipping(mobilenet, digits_small):
    """update=False only accumulates; the update then uses the gradient clipped to clip_norm across all groups."""
    model = _fresh(mobilenet)
    cfg = ftkit.FineTuneConfig(optimizer="sgd", momentum=0.0, weight_decay=0.0, grad_accum=2, batch_size=16,
                               clip_norm=0.5, progress=False)
    tr = model.backend.train.Trainer(model, cfg)
    tr.set_trainable([False, False, False, True, True])   # frozen BN: no batch statistics, so halves add up
    tr.set_lrs([1.0] * 5)
    x, y = next(tr.batches(digits_small.train, shuffle=True, seed=1))
    before = [v.numpy().copy() for vs in tr._vars for v in vs]
    tr.train_step((x[:8], y[:8]), update=False)
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, [v for vs in tr._vars for v in vs]))
    tr.train_step((x[8:], y[8:]), update=True)
    delta = np.concatenate([(b - v.numpy()).ravel() for b, v in zip(before, [v for vs in tr._vars for v in vs])])
    assert np.linalg.norm(delta) == pytest.approx(0.5, rel=1e-3)   # lr 1 x clipped gradient of norm 0.5


def test_weights_round_trip(mobilenet, digits_small, tmp_path):
    from safetensors.numpy import load_file
    model = _fresh(mobilenet)
    tr = model.backend.train.Trainer(model, ftkit.FineTuneConfig(progress=False))
    for batch in tr.batches(digits_small.train, shuffle=True):
        tr.train_step(batch)                 # move weights and BN statistics away from the start
        break
    path = str(tmp_path / "w.safetensors")
    model.backend.io.save_weights(model, path)
    saved = tr.get_weights()
    loss, scores = tr.predict(digits_small.val)
    keys = set(load_file(path))
    assert "Conv1/kernel" in keys and "bn_Conv1/moving_mean" in keys and len(keys) == len(model.native.weights)
    tr.set_weights(mobilenet[1])
    assert not np.array_equal(tr.get_weights()["Conv1/kernel"], saved["Conv1/kernel"])
    model.backend.io.load_weights(model, path)
    after = tr.get_weights()
    assert all(np.array_equal(saved[k], after[k]) for k in saved)
    loss2, scores2 = tr.predict(digits_small.val)
    assert loss2 == loss
    np.testing.assert_array_equal(scores, scores2)
    # a second, freshly built model (as load_run makes it) has the same keys and gives the same scores
    other = ftkit.load_model("mobilenet_v2", framework="tf", num_classes=10, image_size=IMAGE_SIZE,
                             pretrained=False, verbose=False)
    other.backend.io.load_weights(other, path)
    loss3, scores3 = other.backend.train.Trainer(other, ftkit.FineTuneConfig(progress=False)).predict(digits_small.val)
    np.testing.assert_allclose(scores3, scores, atol=1e-6)


def test_prepare_and_augment(mobilenet, digits_small):
    model, _ = mobilenet
    from ftkit.backends.tf import data as tdata
    x, y = tdata.to_tensors(model, digits_small.train)
    assert x.dtype == np.uint8 and x.shape[1:] == (8, 8, 1)
    out = tdata.prepare(model, x[:4]).numpy()
    assert out.shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3)
    aug = tdata.prepare(model, x[:64], train=True, augment=True).numpy()
    assert aug.shape == (64, IMAGE_SIZE, IMAGE_SIZE, 3)
    plain = tdata.prepare(model, x[:64]).numpy()
    assert not np.allclose(aug, plain)   # what each augmentation policy does: tests/test_augment.py
    ds = digits_small.to_tf("train", batch_size=16)
    xb, yb = next(iter(ds))
    assert xb.shape[0] == 16 and xb.dtype.name == "uint8"


def test_finetune_end_to_end(digits):
    data = digits.subset(20)
    model = ftkit.load_model("mobilenet_v2", framework="tf", num_classes=10, image_size=IMAGE_SIZE, verbose=False)
    run = ftkit.finetune(model, data, ftkit.FineTuneConfig(strategy="progressive", epochs=2, batch_size=32,
                                                           lr=1e-3, lr_ratio=10, schedule="cosine",
                                                           label_smoothing=0.1, class_weights="balanced",
                                                           progress=False))
    assert run.status == "finished" and run.device == "cpu" and run.precision == "fp32"
    assert len(run.history["epochs"]) == 2
    assert all(0 <= e["train_accuracy"] <= 1 for e in run.history["epochs"])
    assert all(np.isfinite(e["val_loss"]) for e in run.history["epochs"])
    first = run.history["steps"][0]["lrs"]
    assert first[:-1] == [0.0] * 4 and first[-1] > 0          # progressive: only the head in epoch 1
    out = ftkit.evaluate(model, data)
    assert 0 <= out["accuracy"] <= 1


def test_minilm_partial_freezes_embeddings_and_dropout():
    texts = ["a good film", "a bad film", "great acting", "dull and slow", "loved it", "hated it"] * 2
    labels = [1, 0, 1, 0, 1, 0] * 2
    data = ftkit.Dataset.from_arrays("tiny", (texts, labels), (texts[:6], labels[:6]))
    model = ftkit.load_model("minilm", framework="tf", num_classes=2, max_length=16, verbose=False)
    assert model.group_names == ["embeddings", "layers_0_1", "layers_2_3", "layers_4_5", "head"]
    tr = model.backend.train.Trainer(model, ftkit.FineTuneConfig(progress=False))
    before = tr.get_weights()
    run = ftkit.finetune(model, data, ftkit.FineTuneConfig(strategy="partial", trainable_groups=2, epochs=1,
                                                           batch_size=6, lr=1e-4, progress=False))
    assert run.status == "finished"
    after = tr.get_weights()
    frozen = [k for k in before if k.startswith(("token_embedding", "position_embedding", "segment_embedding",
                                                  "embeddings_layer_norm", "transformer_layer_0/",
                                                  "transformer_layer_1/", "transformer_layer_2/",
                                                  "transformer_layer_3/"))]
    moved = [k for k in before if not np.array_equal(before[k], after[k])]
    assert frozen and not set(frozen) & set(moved)
    assert any(k.startswith("transformer_layer_5/") for k in moved) and "head/head_dense/kernel" in moved
    # frozen transformer layers run without dropout (torch's eval()), trainable ones keep theirs
    import keras
    drops = {g.name: [l.rate for m in g.members for l in m._flatten_layers() if isinstance(l, keras.layers.Dropout)]
             for g in model.groups}
    assert drops["layers_0_1"] and all(r == 0 for r in drops["layers_0_1"])
    assert all(r == 0.1 for r in drops["layers_4_5"])
