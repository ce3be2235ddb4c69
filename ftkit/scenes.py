"""Detection data that ftkit composes from real images it has: Fashion-MNIST items on a canvas.

No detection set with boxes is installed on these machines, so ftkit builds one, and says so: each
scene is a black square canvas with 0 to 3 real Fashion-MNIST photos (28x28, grayscale) pasted at random
positions and scales, overlapping a little at most, each with its exact box and its class. It is
what detection needs (several objects, sizes, positions, classes, empty images) on real pixels, but the
objects sit on a plain background and never occlude much, so it is far easier than photos of streets.
Scenes are seeded: the same arguments give the same scenes. Training scenes use Fashion-MNIST's training
photos; validation and test scenes use its test photos, so no item is seen in training.
"""
import numpy as np

from .errors import ConfigError

THRESHOLD = 16   # item pixels darker than this (of 255) are dropped, so a box hugs what is pasted


def compose_scenes(images, labels, n, *, size=128, objects=(1, 3), empty=0.05, scale=(1.0, 2.0),
                   max_overlap=0.15, seed=0):
    """``n`` scenes of ``size`` x ``size`` pixels made of ``images`` (M, h, w) uint8 and their ``labels``.

    Each scene gets no object with probability ``empty``, else a number of objects drawn from ``objects``
    (inclusive); each object is a random item, resized by a factor drawn from ``scale`` (bilinear), its
    pixels below THRESHOLD dropped, and pasted where its box overlaps no earlier box by more than
    ``max_overlap`` (IoU; 30 tries, else it is left out); overlapping pixels keep the brighter value.

    Returns ``(x, y)``: ``x`` uint8 (n, size, size, 1); ``y`` a list of ``{"boxes": float32 (k, 4)
    [x1, y1, x2, y2] in pixels, "labels": int64 (k,)}``; each box is the bounding box of the item's pasted
    pixels (x2, y2 exclusive, so ``x2 - x1`` is the width in pixels).
    """
    from PIL import Image
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ConfigError(f"images must be uint8 (M, h, w); got {images.dtype} {images.shape}")
    lo, hi = objects
    if not 0 <= lo <= hi or not 0 <= empty < 1 or not 0 < scale[0] <= scale[1]:
        raise ConfigError(f"objects={objects!r}, empty={empty!r}, scale={scale!r}: need 0 <= lo <= hi, "
                          "0 <= empty < 1 and 0 < smallest <= largest")
    largest = int(round(max(images.shape[1:]) * scale[1]))
    if largest > size:
        raise ConfigError(f"scale={scale!r} makes items up to {largest} px, larger than the {size} px canvas")
    rng = np.random.default_rng(seed)
    x = np.zeros((n, size, size, 1), np.uint8)
    y = []
    for i in range(n):
        count = 0 if rng.random() < empty else int(rng.integers(lo, hi + 1))
        boxes, classes = [], []
        for _ in range(count):
            j = int(rng.integers(len(images)))
            f = rng.uniform(*scale)
            h, w = (int(round(d * f)) for d in images.shape[1:])
            item = np.asarray(Image.fromarray(images[j]).resize((w, h), Image.BILINEAR))
            item = np.where(item >= THRESHOLD, item, 0).astype(np.uint8)
            rows, cols = np.flatnonzero(item.any(1)), np.flatnonzero(item.any(0))
            if not len(rows):
                continue
            item = item[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]   # the box hugs the pixels
            for _ in range(30):
                top, left = (int(rng.integers(0, size - d + 1)) for d in item.shape)
                box = [left, top, left + item.shape[1], top + item.shape[0]]
                if all(_iou(box, b) <= max_overlap for b in boxes):
                    region = x[i, top:box[3], left:box[2], 0]
                    np.maximum(region, item, out=region)
                    boxes.append(box)
                    classes.append(int(labels[j]))
                    break
        y.append({"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(classes, np.int64)})
    return x, y


def _iou(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])   # noqa: E731
    return inter / (area(a) + area(b) - inter)


SIZES = {"train": 3000, "val": 400, "test": 400}


def fashion_scenes(seed=0, size=128, sizes=None):
    """Splits of scenes made of Fashion-MNIST (train scenes from its training photos, val and test from its
    test photos): ``({split: (x, y)}, class names)``; ``sizes`` maps a split to its number of scenes."""
    from .data import FASHION_CLASSES, _fashion_mnist_arrays
    (x_train, y_train), (x_test, y_test), _ = _fashion_mnist_arrays()
    sizes = {**SIZES, **(sizes or {})}
    out = {}
    for k, (which, (xs, ys)) in enumerate((("train", (x_train, y_train)), ("val", (x_test[:5000], y_test[:5000])),
                                          ("test", (x_test[5000:], y_test[5000:]))), start=1):
        out[which] = compose_scenes(xs, ys, sizes[which], size=size, seed=seed * 1000 + k)
    return out, list(FASHION_CLASSES)
