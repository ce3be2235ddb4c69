"""Object detection: boxes and classes of the objects in an image (the detector's design, its data
format, its predictions and the COCO metrics, the same for both frameworks).

Data. A split's ``x`` is an array of images (N, H, W[, C]) of one size; its ``y`` a list with one dict per
image, ``{"boxes": (k, 4) [x1, y1, x2, y2] in pixels, "labels": (k,) class indices}``. An image with no
object (k = 0) is valid and trains (all of its anchors are background).

Rows. ``encode`` pads the boxes of each image to the split's largest count: targets (N, K, 5) float32,
``[x1, y1, x2, y2, label]``, padding rows with label -1 (keras-hub's convention; the torch backend drops
them before calling torchvision).

Loss. ``"native"``: the detector computes its own loss from a batch and its targets (RetinaNet's focal
loss for the classes plus a box-regression loss, as torchvision and keras-hub define them). Each backend's
detector takes a prepared batch and its targets and returns ``(loss, detections)``; detections (only in
inference mode) are (N, MAX_DETECTIONS, 6) float32 ``[x1, y1, x2, y2, score, label]`` after non-maximum
suppression, padded with label -1 and score 0.

The detector (both frameworks): RetinaNet (Lin et al. 2017) on the pre-trained MobileNetV2, whose
feature maps at strides 8, 16 and 32 (the ends of the groups blocks_2_6, blocks_7_13 and blocks_14_18)
feed a feature pyramid (``FPN_CHANNELS`` channels, levels ``MIN_LEVEL``..``MAX_LEVEL``), then a class
head and a box head shared by the levels. Anchors: at level l, sizes ``ANCHOR_SIZE * 2**l * 2**(i / 3)``
(i = 0, 1, 2) and aspect ratios ``ASPECT_RATIOS``: 9 per position.

Metrics (``detection_scores``): COCO's mAP@[.5:.95] (``map``) and mAP@0.5 (``map50``) with pycocotools,
and the mean IoU of the detections COCO matched to a true box at IoU 0.5 (``mean_iou``).
"""
import contextlib
import io

import numpy as np

from ..errors import DataError
from . import Encoded, Task

MIN_LEVEL, MAX_LEVEL = 3, 7        # pyramid levels P3 (stride 8) .. P7 (stride 128)
FPN_CHANNELS = 64                  # channels of the pyramid and of the heads' convolutions
HEAD_CONVS = 4                     # convolutions in each head before its output (RetinaNet's, and both libraries')
HEAD_GROUPS = 32                   # GroupNorm after each head convolution (torchvision's RetinaNet v2; keras-hub's
                                   # use_prediction_head_norm): without it the heads' 0.01-std start learns the
                                   # classes far too slowly for a short run
ANCHOR_SIZE = 2.0                  # anchor side at level l: ANCHOR_SIZE * 2**l * 2**(i/3), i = 0, 1, 2
ASPECT_RATIOS = (0.5, 1.0, 2.0)
NUM_SCALES = 3
SCORE_THRESHOLD = 0.05             # detections below this score are dropped
NMS_IOU = 0.5                      # non-maximum suppression: a box overlapping a better one this much goes
MAX_DETECTIONS = 50                # kept per image after suppression


def anchor_sizes():
    """The anchor sides of each pyramid level, in pixels: one tuple of NUM_SCALES sizes per level."""
    return tuple(tuple(ANCHOR_SIZE * 2 ** level * 2 ** (i / NUM_SCALES) for i in range(NUM_SCALES))
                 for level in range(MIN_LEVEL, MAX_LEVEL + 1))


class Detection(Task):
    """Object detection (see the module docstring)."""
    name = "detection"
    loss = "native"
    monitors = ("val_map50", "val_map", "val_mean_iou")

    def check_split(self, dataset, which, split, num_classes):
        x = np.asarray(split.x)
        where = f"dataset {dataset!r}: {which}"
        if not isinstance(split.y, (list, tuple)):
            raise DataError(f"{where} y is a {type(split.y).__name__}; detection targets are a list with one dict "
                            "{'boxes': (k, 4), 'labels': (k,)} per image")
        if len(split.y) != len(x):
            raise DataError(f"{where} has {len(x)} images but {len(split.y)} targets; give one dict per image")
        height, width = x.shape[1:3]
        for i, target in enumerate(split.y):
            check_target(target, f"{where} y[{i}]", width, height, num_classes)

    def check(self, model, data):
        for which, s in data.splits.items():
            check_size(model, s.x, f"dataset {data.name!r}: {which} images")
        if model.num_classes != data.num_classes:
            raise DataError(f"model {model.name!r} detects {model.num_classes} classes but dataset {data.name!r} "
                            f"has {data.num_classes}; load it with num_classes={data.num_classes}")

    def check_config(self, config):
        self.refuse(config, {"augment": "moves the pixels but not the boxes (no box-aware policy yet)",
                             "label_smoothing": "has no meaning for the focal loss",
                             "grad_checkpointing": "cannot reach the backbone: the detector calls it itself",
                             "peft": "would train only adapters or biases of the backbone, and a saved run would "
                                     "keep only the heads, not the new feature pyramid"})

    def encode(self, model, split):
        return Encoded(np.asarray(split.x), pad_targets(split.y))

    def outputs(self, logits, encoded, split):
        return [unpad_detections(row) for row in logits]

    def metrics(self, split, outputs, encoded=None):
        return detection_scores(split.y, outputs)


def check_size(model, x, what):
    """Refuse images (N, H, W[, C]) that are not the square ``image_size`` the detector was built for."""
    size = model.input_spec.get("image_size")
    h, w = np.asarray(x).shape[1:3]
    if (h, w) != (size, size):
        raise DataError(f"{what} are {h}x{w} but model {model.name!r} was built for {size}x{size}; load it with "
                        f"image_size={h}" if h == w else f"{what} are {h}x{w}; a detector takes square images "
                        f"(pad them to {max(h, w)}x{max(h, w)} with black and keep the boxes)")


def check_target(target, where, width, height, num_classes):
    """Refuse one image's target unless it is ``{"boxes": (k, 4), "labels": (k,)}`` with finite boxes
    ``x1 < x2``, ``y1 < y2`` inside the image and labels in 0..num_classes-1 (a DataError naming the box)."""
    if not isinstance(target, dict) or set(target) - {"boxes", "labels"} or "boxes" not in target \
            or "labels" not in target:
        raise DataError(f"{where} is {_shown(target)}; give {{'boxes': (k, 4) [x1, y1, x2, y2] pixels, "
                        "'labels': (k,) class indices}} (k = 0 for an image with no object)")
    boxes = np.asarray(target["boxes"], dtype=object if _ragged(target["boxes"]) else None)
    labels = np.asarray(target["labels"])
    if boxes.size == 0 and labels.size == 0:
        return
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.dtype.kind not in "iuf":
        raise DataError(f"{where}['boxes'] has shape {boxes.shape} ({boxes.dtype}); give numbers of shape (k, 4), "
                        "[x1, y1, x2, y2] in pixels")
    if labels.shape != (len(boxes),) or labels.dtype.kind not in "iu":
        raise DataError(f"{where}['labels'] is {_shown(labels)}; give {len(boxes)} integer class indices, "
                        "one per box")
    bad = ~np.isfinite(boxes).all(1)
    for test, what in ((bad, "is not finite"),
                       (boxes[:, 2] <= boxes[:, 0], "has x2 <= x1"), (boxes[:, 3] <= boxes[:, 1], "has y2 <= y1"),
                       ((boxes[:, :2] < 0).any(1) | (boxes[:, 2] > width) | (boxes[:, 3] > height),
                        f"lies outside the {width}x{height} image")):
        if test.any():
            j = int(np.flatnonzero(test)[0])
            raise DataError(f"{where}['boxes'][{j}] = {boxes[j].tolist()} {what}; boxes are [x1, y1, x2, y2] in "
                            f"pixels with 0 <= x1 < x2 <= {width} and 0 <= y1 < y2 <= {height}")
    if num_classes is not None and ((labels < 0) | (labels >= num_classes)).any():
        j = int(np.flatnonzero((labels < 0) | (labels >= num_classes))[0])
        raise DataError(f"{where}['labels'][{j}] = {labels[j]} is not a class; labels are 0..{num_classes - 1}")


def _ragged(value):
    try:
        np.asarray(value, dtype=float)
        return False
    except (ValueError, TypeError):
        return True


def _shown(v, limit=60):
    s = repr(v)
    return s if len(s) <= limit else s[:limit] + "..."


def pad_targets(targets):
    """Targets (list of dicts) as one array (N, K, 5) ``[x1, y1, x2, y2, label]``, K the largest box count
    (at least 1), padding rows with label -1."""
    k = max([len(t["labels"]) for t in targets] + [1])
    out = np.zeros((len(targets), k, 5), np.float32)
    out[:, :, 4] = -1
    for i, t in enumerate(targets):
        n = len(t["labels"])
        if n:
            out[i, :n, :4] = np.asarray(t["boxes"], np.float32).reshape(n, 4)
            out[i, :n, 4] = np.asarray(t["labels"])
    return out


def unpad_detections(row):
    """One image's detections (D, 6) ``[x1, y1, x2, y2, score, label]`` (label -1: padding) as a dict
    ``{"boxes": (d, 4), "scores": (d,), "labels": (d,)}``, best first."""
    row = np.asarray(row, np.float32)
    row = row[row[:, 5] >= 0]
    row = row[np.argsort(-row[:, 4], kind="stable")]
    return {"boxes": row[:, :4], "scores": row[:, 4], "labels": row[:, 5].astype(np.int64)}


def pad_detections(detections, max_detections=MAX_DETECTIONS):
    """The inverse of :func:`unpad_detections` for a batch: dicts of NumPy arrays -> (N, D, 6)."""
    out = np.zeros((len(detections), max_detections, 6), np.float32)
    out[:, :, 5] = -1
    for i, d in enumerate(detections):
        n = min(len(d["scores"]), max_detections)
        out[i, :n, :4], out[i, :n, 4], out[i, :n, 5] = d["boxes"][:n], d["scores"][:n], d["labels"][:n]
    return out


# ----------------------------------------------------------------------------------------------- metrics

def _coco(truth, predictions):
    """pycocotools' ground truth and detections of ``truth`` / ``predictions`` (lists of dicts, boxes xyxy),
    boxes as COCO's [x, y, width, height]; class c is COCO category c + 1. Detections None when there are none."""
    from pycocotools.coco import COCO
    classes = sorted({int(c) for t in truth for c in np.asarray(t["labels"]).ravel()}
                     | {int(c) for p in predictions for c in np.asarray(p["labels"]).ravel()})
    images, anns = [], []
    for i, t in enumerate(truth):
        images.append({"id": i + 1})
        for box, label in zip(np.asarray(t["boxes"], float).reshape(-1, 4), np.asarray(t["labels"]).ravel()):
            w, h = box[2] - box[0], box[3] - box[1]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(label) + 1, "iscrowd": 0,
                         "bbox": [float(box[0]), float(box[1]), float(w), float(h)], "area": float(w * h)})
    dets = [{"image_id": i + 1, "category_id": int(label) + 1, "score": float(score),
             "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
            for i, p in enumerate(predictions)
            for b, score, label in zip(np.asarray(p["boxes"], float).reshape(-1, 4), p["scores"], p["labels"])]
    with contextlib.redirect_stdout(io.StringIO()):   # pycocotools prints as it indexes
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c + 1} for c in classes]}
        gt.createIndex()
        dt = gt.loadRes(dets) if dets else None
    return gt, dt


def _evaluated(truth, predictions, iou_thresholds):
    from pycocotools.cocoeval import COCOeval
    if len(truth) != len(predictions):
        raise DataError(f"{len(predictions)} predictions for {len(truth)} images; give one dict per image")
    gt, dt = _coco(truth, predictions)
    if dt is None or not gt.getAnnIds():
        return None
    ev = COCOeval(gt, dt, "bbox")
    ev.params.iouThrs = np.asarray(iou_thresholds, float)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    return ev


def average_precision(truth, predictions, iou_thresholds=(0.5,)):
    """COCO's average precision (101-point interpolated, averaged over the classes that have true boxes and
    over ``iou_thresholds``), all object sizes, up to 100 detections per image; 0.0 without detections."""
    ev = _evaluated(truth, predictions, iou_thresholds)
    if ev is None:
        return 0.0
    precision = ev.eval["precision"][:, :, :, 0, -1]   # (thresholds, recall points, classes), area "all"
    return float(precision[precision > -1].mean()) if (precision > -1).any() else 0.0


COCO_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def detection_scores(truth, predictions):
    """``map`` (COCO mAP@[.5:.95]), ``map50`` (mAP@0.5) and ``mean_iou``: the mean IoU of the detections
    COCO matched to a true box at IoU >= 0.5 (0.0 when none matched). ``truth`` and ``predictions`` are
    lists of dicts, one per image, with ``boxes`` [x1, y1, x2, y2] and ``labels`` (predictions: ``scores``)."""
    ev = _evaluated(truth, predictions, COCO_THRESHOLDS)
    if ev is None:
        return {"map": 0.0, "map50": 0.0, "mean_iou": 0.0}
    precision = ev.eval["precision"][:, :, :, 0, -1]
    ap = [float(p[p > -1].mean()) if (p > -1).any() else 0.0 for p in precision]
    return {"map": float(np.mean(ap)), "map50": ap[0], "mean_iou": _matched_iou(ev)}


def _matched_iou(ev):
    """Mean IoU of the (detection, true box) pairs COCOeval matched at IoU 0.5 (area "all")."""
    from pycocotools import mask
    gt, dt, ious = ev.cocoGt, ev.cocoDt, []
    full = ev.params.areaRng[0]
    for e in ev.evalImgs:
        if e is None or list(e["aRng"]) != list(full):
            continue
        for d, g in zip(e["dtIds"], e["dtMatches"][0]):
            if g > 0:
                ious.append(mask.iou([dt.anns[d]["bbox"]], [gt.anns[int(g)]["bbox"]], [0])[0][0])
    return float(np.mean(ious)) if ious else 0.0
