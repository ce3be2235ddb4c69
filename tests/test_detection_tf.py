"""The TensorFlow detector (ftkit/backends/tf/detection.py): RetinaNet from keras-hub's parts on the ported
MobileNetV2. Its backbone taps, its loss in training (empty images included), a real fine-tuning run on a
fixed tiny set of scenes, frozen groups, and a saved run loaded back."""
import numpy as np
import pytest

import ftkit
from _helpers import tiny_scenes, train_tiny_detector

pytest.importorskip("tensorflow")
pytest.importorskip("keras_hub")

from ftkit.backends.tf import data as tdata  # noqa: E402
from ftkit.backends.tf import detection  # noqa: E402
from ftkit.tasks.detection import MAX_DETECTIONS, pad_targets  # noqa: E402

SIZE = 64
# measured (CPU, 2 threads): the untrained head's mAP@0.5 on the 32 training scenes 0.0005, after 60 steps 0.97
MAP50_FLOOR = 0.6


@pytest.fixture(scope="module")
def scenes():
    return tiny_scenes(SIZE)


def _detector():
    return ftkit.load_model("mobilenet_v2", framework="tf", task="detection", num_classes=10, image_size=SIZE,
                            verbose=False)


@pytest.fixture(scope="module")
def trained(scenes):
    return train_tiny_detector(_detector(), scenes)


def test_backbone_taps_equal_the_classifier_body_and_torchvision_features():
    import keras
    import torch
    from ftkit.backends.torch.models import _mobilenet_net
    model = _detector()
    assert model.group_names == ["stem", "blocks_2_6", "blocks_7_13", "blocks_14_18", "neck", "head"]
    assert "package" in model.source or "download" in model.source
    native = model.native
    # every trainable variable in exactly one group
    from ftkit.backends.tf.models import group_variables
    in_groups = [id(v) for g in model.groups for v in group_variables(g.members)]
    assert len(in_groups) == len(set(in_groups)) and set(in_groups) == {id(v) for v in native.trainable_variables}
    classifier = ftkit.load_model("mobilenet_v2", framework="tf", num_classes=10, image_size=SIZE, verbose=False)
    # the same groups, layer for layer, as the classifier's (other objects; the same names but for the
    # unnamed, weightless pooling layer keras.applications adds)
    def layers(g):
        return [(type(l).__name__, l.name if l.weights else None) for l in g.members]
    for a, b in zip(model.groups[:4], classifier.groups[:4]):
        assert a.name == b.name and layers(a) == layers(b)
    x = np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)
    taps = native.encoder(x, training=False)
    body = classifier.body
    mine = keras.Model(body.inputs, [body.get_layer(n).output for n in detection.TAPS.values()])(x, training=False)
    net, _ = _mobilenet_net(True)
    net.eval()
    with torch.no_grad():
        t = torch.from_numpy(x.transpose(0, 3, 1, 2))
        feats = []
        for i, layer in enumerate(net.features):
            t = layer(t)
            if i in (6, 13, 18):
                feats.append(t.numpy().transpose(0, 2, 3, 1))
    for level, ref, theirs, (stride, channels) in zip(detection.TAPS, mine, feats, ((8, 32), (16, 96), (32, 1280))):
        got = taps[level].numpy()
        assert got.shape == (2, SIZE // stride, SIZE // stride, channels), (level, got.shape)
        np.testing.assert_array_equal(got, ref.numpy())
        np.testing.assert_allclose(got, theirs, atol=1e-4, rtol=0)


def test_train_mode_gives_a_finite_loss_and_an_image_without_boxes_trains(scenes):
    import tensorflow as tf
    model = _detector()
    native = model.native
    x = tdata.prepare(model, scenes.train.x[:2], train=True)
    targets = pad_targets(scenes.train.y[:2])
    loss, found = native.loss_and_outputs(x, targets, training=True)
    assert found is None and loss.dtype == tf.float32 and loss.shape == () and np.isfinite(float(loss)) and loss > 0
    empty = pad_targets([{"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}])
    head = native.class_head.trainable_variables
    with tf.GradientTape() as tape:
        loss, _ = native.loss_and_outputs(x[:1], empty, training=True)
    grads = tape.gradient(loss, head)
    assert np.isfinite(float(loss)) and float(loss) > 0       # background anchors still cost something
    assert all(g is not None for g in grads) and any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
    # inference: (N, MAX_DETECTIONS, 6), label -1 and score 0 for padding; inside tf.function, free batch size
    step = tf.function(lambda a, b: native.loss_and_outputs(a, b, training=False),
                       input_signature=[tf.TensorSpec((None, SIZE, SIZE, 3)), tf.TensorSpec((None, None, 5))])
    for n in (3, 1):
        loss, found = step(tdata.prepare(model, scenes.train.x[:n]), pad_targets(scenes.train.y[:n]))
        found = found.numpy()
        assert found.shape == (n, MAX_DETECTIONS, 6) and found.dtype == np.float32 and np.isfinite(float(loss))
        pad = found[..., 5] < 0
        assert (found[pad][:, 4] == 0).all() and ((found[~pad][:, 4] > 0.05) & (found[~pad][:, 5] < 10)).all()


def test_the_prior_bias_survives_init_head():
    model = _detector()
    bias = model.native.class_head.prediction_layer.bias
    model.init_head(3)
    np.testing.assert_allclose(bias.numpy(), -np.log(99.0), rtol=1e-6)
    kernel = model.native.box_head.prediction_layer.kernel.numpy()
    model.init_head(4)
    assert not np.array_equal(kernel, model.native.box_head.prediction_layer.kernel.numpy())


def test_fine_tuning_raises_map50_well_above_the_untrained_head(trained, scenes):
    model, before, run = trained
    assert run.steps_done == 60
    losses = [e["train_loss"] for e in run.history["epochs"]]
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0], losses
    assert "val_map50" in run.history["epochs"][-1] and "train_accuracy" not in run.history["epochs"][-1]
    after = ftkit.evaluate(model, scenes, split="train")
    print("map50", before["map50"], "->", after["map50"])
    assert after["map50"] >= MAP50_FLOOR and after["map50"] > before["map50"] + 0.1, (before, after)


def test_head_only_trains_neck_and_head_and_leaves_the_backbone_bitwise(scenes):
    from ftkit.analysis import snapshot
    model = _detector()
    model.init_head(0)   # what the run does first (seed 0) to the new neck and head
    before = snapshot(model, statistics=True)
    ftkit.finetune(model, scenes, strategy="head_only", epochs=1, lr=1e-3, batch_size=16, seed=0, progress=False)
    after = snapshot(model, statistics=True)
    for name in model.group_names[:-2]:   # the pre-trained backbone; the new neck and head train
        assert all(np.array_equal(a, b) for a, b in zip(before[name], after[name])), name
    for name in ("neck", "head"):
        assert any(not np.array_equal(a, b) for a, b in zip(before[name], after[name])), name


def test_a_saved_run_loads_back_and_finds_the_same_boxes(trained, scenes, tmp_path):
    model, _, run = trained
    saved = ftkit.load_run(run.save(str(tmp_path / "det")))
    assert saved.model.task == "detection" and saved.model.input_spec["image_size"] == SIZE
    a = ftkit.evaluate(model, scenes, split="train")
    b = ftkit.evaluate(saved.model, scenes, split="train")
    assert a == pytest.approx(b, rel=1e-5)
    mine, theirs = model.predict(scenes.train.x[:4]), saved.model.predict(scenes.train.x[:4])
    for p, q in zip(mine, theirs):
        np.testing.assert_allclose(p["boxes"], q["boxes"], atol=1e-4)
        np.testing.assert_array_equal(p["labels"], q["labels"])


def test_boxes_pushed_off_the_image_are_dropped_not_returned_flat():
    """As torchvision's remove_small_boxes does: a box wholly off the image is flat once clipped, and goes."""
    import keras
    model = _detector()
    images = keras.ops.zeros((1, SIZE, SIZE, 3))
    n = sum(int(a.shape[0]) for a in model.native.anchor_generator(images).values())
    cls_pred = keras.ops.full((1, n, 10), 5.0)          # every anchor sure of every class
    on_image = keras.ops.convert_to_numpy(model.native._detections(images, keras.ops.zeros((1, n, 4)), cls_pred))
    kept = on_image[0][on_image[0, :, 5] >= 0]
    assert len(kept) > 0 and np.all(kept[:, 2] - kept[:, 0] > 0.01) and np.all(kept[:, 3] - kept[:, 1] > 0.01)
    shift = np.zeros((1, n, 4), "float32")
    shift[..., 0] = -50.0                                # every box moved 50 anchor widths to the left
    off = keras.ops.convert_to_numpy(model.native._detections(images, keras.ops.convert_to_tensor(shift), cls_pred))
    assert np.all(off[0, :, 5] == -1), off[0][off[0, :, 5] >= 0][:3]
